#!/usr/bin/env bash
# k2d stage driver: ./run.sh [--recipe NAME] [--stage N] [--stop-stage M] [options]
# Every stage is one or a few `python -m k2d.<module>` calls; all logic lives in the k2d package.

# ---- options (each variable declared here is a --option) ----
recipe=mini_cs        # a directory under egs/
stage=0               # first stage to run
stop_stage=7          # last stage to run
force=false           # redo stages whose outputs already exist
nj=2                  # shards of stages 1 and 3 and the teacher cache; jobs at once on this machine
cmd=local             # how jobs start: local (this machine) or slurm (egs/NAME/conf/cmd.yaml's resources)
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
  --nj N              shards of stages 1, 3 and the teacher cache (array tasks with --cmd slurm); with
                      --cmd local also the jobs running at once (default: $nj)
  --cmd local|slurm   run the jobs on this machine or as Slurm jobs, resources from
                      egs/NAME/conf/cmd.yaml (default: $cmd)
  --device DEV        cpu | cuda | cuda:N | auto (default: $device)
  --corpus-dir DIR    the corpus or audio directory of a real recipe (default: from egs/NAME/conf/prepare.yaml)
  --ngpu N            --cmd local: GPUs for stages 1, 3, 5 (torchrun, one process each) (default: $ngpu)
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
  7 report        decode results, models -> exp/NAME/RESULTS.md (speed, size, MER, runtimes), export/ (HF),
                  export_ct2/ (CTranslate2, faster-whisper), export_onnx/ (sherpa-onnx)

Configuration: egs/NAME/conf/*.yaml (one file per stage)."

caller=$PWD  # relative paths given on the command line are the caller's
cd "$(dirname "$0")" || exit 1
# shellcheck source=utils/parse_options.sh
. utils/parse_options.sh
# shellcheck source=utils/log.sh
. utils/log.sh
set -euo pipefail
[[ -z "$corpus_dir" || "$corpus_dir" = /* ]] || corpus_dir="$caller/$corpus_dir"
[[ -z "$work_dir" || "$work_dir" = /* ]] || work_dir="$caller/$work_dir"
[[ -z "$conf_dir" || "$conf_dir" = /* ]] || conf_dir="$caller/$conf_dir"

[ $# -eq 0 ] || die "unexpected argument '$1' (see --help)"
require_int stage "$stage"
require_int stop-stage "$stop_stage"
require_int nj "$nj"
require_int ngpu "$ngpu"
[ "$nj" -ge 1 ] || die "--nj must be at least 1"
[[ "$cmd" =~ ^(local|slurm)$ ]] || die "--cmd must be local or slurm, got '$cmd'"
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
force_opt=()
[ "$force" = true ] && force_opt=(--force)
started=$(date +%s)
log "$0 $*: recipe $recipe, stages $stage-$stop_stage, device $device"

run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
begin_stage() { stage_started=$(date +%s); log "Stage $1: $2"; }
end_stage() { log "Stage $1 done in $(( $(date +%s) - stage_started )) s"; }
jobs=(python -m k2d.launch --backend "$cmd" --nj "$nj")
if [ "$cmd" = slurm ]; then
  [ -f "$conf/cmd.yaml" ] || die "--cmd slurm needs $conf/cmd.yaml (the jobs' resources; see egs/mini_cs/conf/cmd.yaml)"
  command -v sbatch >/dev/null || die "--cmd slurm: sbatch is not on PATH (is this a Slurm login node?)"
  jobs+=(--cmd-config "$conf/cmd.yaml")
fi
# A resumable stage (1, 3, teacher cache): NAME MODULE ARGS... runs --nj shards as jobs (local or a Slurm
# array; logs in exp/NAME/log/NAME/), then merges them. --cmd local --ngpu N: one shard per GPU (torchrun).
sharded() {
  local name=$1
  shift
  if [ "$cmd" = local ] && [ "$ngpu" -gt 1 ]; then
    torchrun --standalone --nproc-per-node "$ngpu" -m "$@"
    return
  fi
  "${jobs[@]}" --kind label --tasks "$nj" --log-dir "${L[logs]}/$name" -- \
    python -m "$@" --shard '{task}' --num-shards '{tasks}' --no-merge || die "$name: some shards failed (see above)"
  python -m "$@" --shard 0 --num-shards "$nj" --merge-only
}
# Training (stage 5): NAME MODULE ARGS...; DDP under torchrun with --ngpu N, or one torchrun per node under Slurm.
train() {
  local name=$1
  shift
  if [ "$cmd" = slurm ]; then
    "${jobs[@]}" --kind train --torchrun --log-dir "${L[logs]}/$name" -- -m "$@" || die "$name failed (see above)"
  elif [ "$ngpu" -gt 1 ]; then
    torchrun --standalone --nproc-per-node "$ngpu" -m "$@"
  else
    python -m "$@"
  fi
}

# Every stage's config is checked now, not when the stage comes (hours later).
python -m k2d.check_config --recipe "$recipe" --conf-dir "$conf" || die "fix the configs in $conf (see above)"
# Every path and recipe value, from the one owner of the on-disk layout (k2d/layout.py): L[key] = value.
layout=$(python -m k2d.layout --recipe "$recipe" --work-dir "$work_dir" --conf-dir "$conf" \
  --teacher "$teacher" --validator "$validator" --metrics "$metrics") || die "cannot read $conf/recipe.yaml (see above)"
declare -A L
while read -r key value; do L[$key]=$value; done <<< "$layout"
read -r -a metric_list <<< "${L[metrics]}"
read -r -a models <<< "${L[models]}"  # NAME=PATH, the teacher first (the reference of the results table)
test_sets=${L[test_sets]}
kept_pattern=${L[kept_pattern]}

if run_stage 0; then
  begin_stage 0 "prepare: ${L[corpus]} corpus -> ${L[manifests]}${L[other_corpora]:+; test corpora ${L[other_corpora]}}"
  corpus_opt=()
  [ -n "$corpus_dir" ] && corpus_opt=(--corpus-dir "$corpus_dir")
  python -m k2d.prepare --preparer "${L[corpus]}" --data-dir "${L[data]}" --config "$conf/prepare.yaml" \
    --nj "$nj" "${corpus_opt[@]}" "${force_opt[@]}"
  for other in ${L[other_corpora]}; do
    log "test corpus $other: ${L[corpus_config:$other]} -> ${L[data:$other]}"
    python -m k2d.prepare --preparer "$other" --data-dir "${L[data:$other]}" --config "${L[corpus_config:$other]}" \
      --nj "$nj" "${force_opt[@]}"
  done
  end_stage 0
fi

if run_stage 1; then
  begin_stage 1 "pseudo-label: ${L[unlabelled_recordings]}, teacher ${L[teacher]} -> ${L[pseudo]}"
  sharded pseudo_label k2d.pseudo_label --recordings "${L[unlabelled_recordings]}" \
    --model "${L[teacher]}" --config "$conf/pseudo_label.yaml" --output "${L[pseudo]}" --device "$device" \
    "${force_opt[@]}"
  end_stage 1
fi

if run_stage 2; then
  begin_stage 2 "chunk: ${L[pseudo]} -> ${L[chunks]}"
  python -m k2d.chunking --recordings "${L[unlabelled_recordings]}" \
    --segments "${L[pseudo]}" --config "$conf/chunk.yaml" --output "${L[chunks]}" --teacher "${L[teacher]}" \
    "${force_opt[@]}"
  end_stage 2
fi

if run_stage 3; then
  begin_stage 3 "validate: ${L[chunks]}, validator ${L[validator]} -> ${L[validated]}"
  sharded validate k2d.validate --cuts "${L[chunks]}" --model "${L[validator]}" --config "$conf/validate.yaml" \
    --output "${L[validated]}" --device "$device" "${force_opt[@]}"
  end_stage 3
fi

if run_stage 4; then
  begin_stage 4 "filter (${L[metrics]}): ${L[validated]} -> $kept_pattern, ${L[filter_report]}/"
  truth_opt=()
  [ -n "${L[truth]}" ] && [ -f "${L[truth]}" ] && truth_opt=(--truth "${L[truth]}")
  python -m k2d.filtering --cuts "${L[validated]}" --output-pattern "$kept_pattern" \
    --report-dir "${L[filter_report]}" --config "$conf/filter.yaml" --metrics "${L[metrics]// /,}" \
    "${truth_opt[@]}" "${force_opt[@]}"
  end_stage 4
fi

if run_stage 5; then
  begin_stage 5 "distill: one student per filter metric (${L[metrics]}) -> ${L[exp]}/student_*/"
  # the teacher's outputs, once per chunk (a no-op when distill.yaml says cache_teacher: false)
  kept_sets=()
  for metric in "${metric_list[@]}"; do kept_sets+=("${kept_pattern/\{metric\}/$metric}"); done
  log "teacher cache: the chunks of ${kept_sets[*]}, teacher ${L[teacher]} -> ${L[teacher_cache]}"
  sharded cache_teacher k2d.cache_teacher --teacher "${L[teacher]}" --cuts "${L[validated]}" --kept "${kept_sets[@]}" \
    --config "$conf/distill.yaml" --output "${L[teacher_cache]}" --device "$device" "${force_opt[@]}"
  dev_opt=()  # the students are chosen by their long-form MER on the dev set, decoded as stage 6 decodes
  [ -n "${L[dev_recordings]}" ] && dev_opt=(--valid-recordings "${L[dev_recordings]}"
    --valid-supervisions "${L[dev_supervisions]}" --valid-decode-config "$conf/decode.yaml")
  for metric in "${metric_list[@]}"; do
    kept="${kept_pattern/\{metric\}/$metric}"
    log "distill ($metric): $kept, teacher ${L[teacher]} -> ${L[exp]}/student_$metric/"
    train "distill_$metric" k2d.distill --teacher "${L[teacher]}" --train-cuts "$kept" --out-dir "${L[exp]}/student_$metric" \
      --config "$conf/distill.yaml" --device "$device" --teacher-cache "${L[teacher_cache]}" "${dev_opt[@]}" "${force_opt[@]}"
  done
  end_stage 5
fi

if run_stage 6; then
  begin_stage 6 "decode + score: every model on $test_sets (${L[decode_modes]}-form) -> ${L[exp]}/MODEL/decode_SET/"
  # one job per model, test set and mode: a line each in the list the launcher runs
  mkdir -p "${L[logs]}/decode"
  decodes="${L[logs]}/decode/commands.txt"
  : > "$decodes"
  for model in "${models[@]}"; do
    for set in $test_sets; do
      for mode in ${L[decode_modes]}; do
        out=${L[decode_dir:${model%%=*}:$set:$mode]}
        log "decode ($mode-form): $set with ${model#*=} -> $out"
        decode=(python -m k2d.decode --model "${model#*=}" --set-name "$set" --mode "$mode"
          --recordings "${L[recordings:$set]}" --supervisions "${L[supervisions:$set]}"
          --out-dir "$out" --config "$conf/decode.yaml" --device "$device" "${force_opt[@]}")
        printf '%q ' "${decode[@]}" >> "$decodes"
        echo >> "$decodes"
      done
    done
  done
  "${jobs[@]}" --kind decode --commands "$decodes" --log-dir "${L[logs]}/decode" || die "some decodes failed (see above)"
  end_stage 6
fi

if run_stage 7 && [ -z "$test_sets" ]; then
  log "Stage 7: report: skipped, the recipe has no test sets (test_sets in $conf/recipe.yaml)"
elif run_stage 7; then
  read -r -a scored <<< "${L[scored_sets]}"
  begin_stage 7 "report: ${L[exp]}/*/decode_* -> ${L[exp]}/RESULTS.md, ${L[exp]}/export/, export_ct2/, export_onnx/"
  python -m k2d.report --exp-dir "${L[exp]}" --models "${models[@]}" --test-sets "${scored[@]}" \
    --bench-recordings "${L[bench_recordings]}" --bench-supervisions "${L[bench_supervisions]}" --filter-report "${L[filter_report]}/report.yaml" \
    --config "$conf/report.yaml" --decode-config "$conf/decode.yaml" --device "$device" "${force_opt[@]}"
  end_stage 7
fi

log "done: stages $stage-$stop_stage of $recipe in $(( $(date +%s) - started )) s"
