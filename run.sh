#!/usr/bin/env bash
# k2d stage driver: ./run.sh [--recipe NAME] [--stage N] [--stop-stage M] [options]
# Every stage is one or a few `python -m k2d.<module>` calls; all logic lives in the k2d package.

# ---- options (each variable declared here is a --option) ----
recipe=mini_cs        # a directory under egs/
stage=0               # first stage to run
stop_stage=7          # last stage to run
force=false           # redo stages whose outputs already exist
nj=2                  # parallel jobs on this machine
device=auto           # cpu, cuda, cuda:N, or auto (cuda when available)
corpus_dir=""         # where a real corpus (or your own audio) lives; overrides egs/NAME/conf/prepare.yaml
ngpu=0                # >1: stages 1, 3 and 5 run one process per GPU under torchrun
teacher=""            # override recipe.yaml's teacher (Hub id or directory)
validator=""          # override recipe.yaml's validator
metrics=""            # override recipe.yaml's filter_metrics, e.g. "none ngram mer per composite"
conf_dir=""           # stage configs (default: egs/NAME/conf)
work_dir=.            # data/ and exp/ are created here

help_message="Usage: $0 [options]
Turns unlabelled long-form speech into a small, fast recogniser by knowledge distillation (K2D).

Options:
  --recipe NAME       recipe under egs/ (default: $recipe)
  --stage N           first stage to run (default: $stage)
  --stop-stage M      last stage to run (default: $stop_stage)
  --force             redo stages whose outputs exist (default: $force)
  --nj N              parallel jobs (default: $nj)
  --device DEV        cpu | cuda | cuda:N | auto (default: $device)
  --corpus-dir DIR    the corpus or audio directory of a real recipe (default: from egs/NAME/conf/prepare.yaml)
  --ngpu N            GPUs for stages 1, 3, 5 (torchrun, one process each) (default: $ngpu)
  --teacher MODEL     teacher, Hub id or directory (default: egs/NAME/conf/recipe.yaml)
  --validator MODEL   validator (default: egs/NAME/conf/recipe.yaml)
  --metrics \"M ...\"   filter metrics, one student each: none ngram mer per composite (default: recipe.yaml)
  --conf-dir DIR      stage configs (default: egs/NAME/conf)
  --work-dir DIR      where data/NAME and exp/NAME go (default: the repository root)

Stages (reads -> writes; NAME = recipe, SPLIT = split):
  0 prepare       corpus (mini_cs: synthesizes it) -> data/NAME/manifests/NAME_{recordings,supervisions}_SPLIT.jsonl.gz
  1 pseudo-label  long-form unlabelled recordings, teacher -> data/NAME/pseudo/NAME_supervisions_SPLIT-pl.jsonl.gz
  2 chunk         recordings + teacher segments -> data/NAME/cuts/NAME_cuts_SPLIT-chunks.jsonl.gz (<= 30 s)
  3 validate      chunks, validator -> data/NAME/cuts/NAME_cuts_SPLIT-validated.jsonl.gz (transcript + distances)
  4 filter        validated chunks -> data/NAME/cuts/NAME_cuts_SPLIT-k2d_METRIC.jsonl.gz, data/NAME/filter_report/
  5 distill       kept cuts, teacher -> exp/NAME/student_METRIC/ (beta*CE + gamma*KL)
  6 decode+score  test sets, all models -> exp/NAME/MODEL/decode_SET/{hyp,ref,errs}.txt, MER summary
  7 report        decode results, models -> exp/NAME/RESULTS.md (speed, size, MER table), export/ (HF), export_ct2/ (CTranslate2)

Configuration: egs/NAME/conf/*.yaml (one file per stage)."

cd "$(dirname "$0")" || exit 1
# shellcheck source=utils/parse_options.sh
. utils/parse_options.sh
# shellcheck source=utils/log.sh
. utils/log.sh
set -euo pipefail

[ $# -eq 0 ] || die "unexpected argument '$1' (see --help)"
require_int stage "$stage"
require_int stop-stage "$stop_stage"
require_int nj "$nj"
require_int ngpu "$ngpu"
[ "$nj" -ge 1 ] || die "--nj must be at least 1"
[ "$stage" -le "$stop_stage" ] || die "--stage $stage is after --stop-stage $stop_stage"
[ "$stop_stage" -le 7 ] || die "--stop-stage must be 0-7, got $stop_stage"
[[ "$device" =~ ^(auto|cpu|cuda(:[0-9]+)?)$ ]] || die "--device must be auto, cpu, cuda or cuda:N, got '$device'"
recipes=(egs/*/)
recipes=("${recipes[@]#egs/}")
[ -d "egs/$recipe" ] || die "unknown recipe '$recipe': no directory egs/$recipe (have: ${recipes[*]%/})"

# shellcheck source=path.sh
. ./path.sh
# Progress bars redrawn every step flood a log file; when stderr is not a terminal, redraw twice a minute.
[ -t 2 ] || export TQDM_MININTERVAL="${TQDM_MININTERVAL:-30}"

conf="${conf_dir:-egs/$recipe/conf}"
[ -f "$conf/recipe.yaml" ] || die "$conf/recipe.yaml does not exist"
data="$work_dir/data/$recipe"
force_opt=()
[ "$force" = true ] && force_opt=(--force)
started=$(date +%s)
log "$0 $*: recipe $recipe, stages $stage-$stop_stage, device $device"

run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
begin_stage() { stage_started=$(date +%s); log "Stage $1: $2"; }
end_stage() { log "Stage $1 done in $(( $(date +%s) - stage_started )) s"; }
recipe_value() { python -m k2d.recipe_config "$conf/recipe.yaml" "$@"; }
# python -m MODULE ..., or one process per GPU under torchrun when --ngpu > 1
launch() {
  if [ "$ngpu" -gt 1 ]; then
    torchrun --standalone --nproc-per-node "$ngpu" -m "$@"
  else
    python -m "$@"
  fi
}

corpus=$(recipe_value corpus --default "$recipe")  # the corpus stage 0 prepares (its manifests' name)
unlabelled=$(recipe_value unlabelled_split)
test_sets=$(recipe_value test_sets)
[ -n "$teacher" ] || teacher=$(recipe_value teacher)
[ -n "$validator" ] || validator=$(recipe_value validator)
[ -n "$metrics" ] || metrics=$(recipe_value filter_metrics)
decode_modes=$(recipe_value decode_modes --default long)
truth=$(recipe_value truth --default "")  # relative to data/NAME
read -r -a metric_list <<< "$metrics"
manifests="$data/manifests"
# A test-corpus recipe takes its unlabelled audio from another recipe's manifest (relative to --work-dir).
unlabelled_recordings=$(recipe_value unlabelled_recordings --default "")
if [ -n "$unlabelled_recordings" ]; then
  unlabelled_recordings="$work_dir/$unlabelled_recordings"
else
  unlabelled_recordings="$manifests/${corpus}_recordings_${unlabelled}.jsonl.gz"
fi
pseudo="$data/pseudo/${recipe}_supervisions_${unlabelled}-pl.jsonl.gz"
chunks="$data/cuts/${recipe}_cuts_${unlabelled}-chunks.jsonl.gz"
validated="$data/cuts/${recipe}_cuts_${unlabelled}-validated.jsonl.gz"
kept_pattern="$data/cuts/${recipe}_cuts_${unlabelled}-k2d_{metric}.jsonl.gz"
teacher_cache="$data/cuts/${recipe}_cuts_${unlabelled}-teacher.jsonl.gz"
exp="$work_dir/exp/$recipe"

if run_stage 0; then
  begin_stage 0 "prepare: $recipe corpus -> $manifests"
  corpus_opt=()
  [ -n "$corpus_dir" ] && corpus_opt=(--corpus-dir "$corpus_dir")
  python -m k2d.prepare --recipe "$corpus" --data-dir "$data" --config "$conf/prepare.yaml" \
    --nj "$nj" "${corpus_opt[@]}" "${force_opt[@]}"
  end_stage 0
fi

if run_stage 1; then
  begin_stage 1 "pseudo-label: $unlabelled_recordings, teacher $teacher -> $pseudo"
  launch k2d.pseudo_label --recordings "$unlabelled_recordings" \
    --model "$teacher" --config "$conf/pseudo_label.yaml" --output "$pseudo" --device "$device" "${force_opt[@]}"
  end_stage 1
fi

if run_stage 2; then
  begin_stage 2 "chunk: $pseudo -> $chunks"
  python -m k2d.chunking --recordings "$unlabelled_recordings" \
    --segments "$pseudo" --config "$conf/chunk.yaml" --output "$chunks" "${force_opt[@]}"
  end_stage 2
fi

if run_stage 3; then
  begin_stage 3 "validate: $chunks, validator $validator -> $validated"
  launch k2d.validate --cuts "$chunks" --model "$validator" --config "$conf/validate.yaml" \
    --output "$validated" --device "$device" "${force_opt[@]}"
  end_stage 3
fi

if run_stage 4; then
  begin_stage 4 "filter (${metrics}): $validated -> ${kept_pattern}, $data/filter_report/"
  truth_opt=()
  [ -n "$truth" ] && [ -f "$data/$truth" ] && truth_opt=(--truth "$data/$truth")
  python -m k2d.filtering --cuts "$validated" --output-pattern "$kept_pattern" --report-dir "$data/filter_report" \
    --config "$conf/filter.yaml" --metrics "${metrics// /,}" "${truth_opt[@]}" "${force_opt[@]}"
  end_stage 4
fi

if run_stage 5; then
  begin_stage 5 "distill: one student per filter metric (${metrics}) -> $exp/student_*/"
  cache_opt=()
  if [ "$(python -m k2d.recipe_config "$conf/distill.yaml" cache_teacher --default True)" = True ]; then
    log "teacher cache: $validated, teacher $teacher -> $teacher_cache"
    launch k2d.cache_teacher --teacher "$teacher" --cuts "$validated" --metrics "${metrics// /,}" \
      --alpha "$(python -m k2d.recipe_config "$conf/filter.yaml" alpha --default 0.4)" \
      --config "$conf/distill.yaml" --output "$teacher_cache" --device "$device" "${force_opt[@]}"
    cache_opt=(--teacher-cache "$teacher_cache")
  fi
  for metric in "${metric_list[@]}"; do
    kept="${kept_pattern/\{metric\}/$metric}"
    log "distill ($metric): $kept, teacher $teacher -> $exp/student_$metric/"
    launch k2d.distill --teacher "$teacher" --train-cuts "$kept" --out-dir "$exp/student_$metric" \
      --config "$conf/distill.yaml" --device "$device" "${cache_opt[@]}" "${force_opt[@]}"
  done
  end_stage 5
fi

# Every model of the recipe, as NAME=PATH: the teacher first (the reference of the results table).
models=("teacher=$teacher" "validator=$validator")
for metric in "${metric_list[@]}"; do
  models+=("student_$metric=$exp/student_$metric/best")
done

if run_stage 6; then
  begin_stage 6 "decode + score: every model on $test_sets ($decode_modes-form) -> $exp/MODEL/decode_SET/"
  for model in "${models[@]}"; do
    for set in $test_sets; do
      for mode in $decode_modes; do
        suffix=""
        [ "$mode" = short ] && suffix=_short
        out="$exp/${model%%=*}/decode_${set}${suffix}"
        log "decode ($mode-form): $set with ${model#*=} -> $out"
        python -m k2d.decode --model "${model#*=}" --set-name "$set" --mode "$mode" \
          --recordings "$manifests/${corpus}_recordings_${set}.jsonl.gz" \
          --supervisions "$manifests/${corpus}_supervisions_${set}.jsonl.gz" \
          --out-dir "$out" --config "$conf/decode.yaml" --device "$device" "${force_opt[@]}"
      done
    done
  done
  end_stage 6
fi

if run_stage 7 && [ -z "$test_sets" ]; then
  log "Stage 7: report: skipped, the recipe has no test sets (test_sets in $conf/recipe.yaml)"
elif run_stage 7; then
  read -r -a set_list <<< "$test_sets"
  scored=()  # decode_SET (long-form) and decode_SET_short directories, as stage 6 names them
  for mode in $decode_modes; do
    for set in "${set_list[@]}"; do
      if [ "$mode" = short ]; then scored+=("${set}_short"); else scored+=("$set"); fi
    done
  done
  begin_stage 7 "report: $exp/*/decode_* -> $exp/RESULTS.md, $exp/export/, $exp/export_ct2/"
  python -m k2d.report --exp-dir "$exp" --models "${models[@]}" --test-sets "${scored[@]}" \
    --bench-recordings "$manifests/${corpus}_recordings_${set_list[0]}.jsonl.gz" \
    --filter-report "$data/filter_report/report.yaml" --config "$conf/report.yaml" --device "$device" "${force_opt[@]}"
  end_stage 7
fi

log "done: stages $stage-$stop_stage of $recipe in $(( $(date +%s) - started )) s"
