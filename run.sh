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

Stages (reads -> writes; NAME = recipe, SPLIT = split):
  0 prepare       corpus (mini_cs: synthesizes it) -> data/NAME/manifests/NAME_{recordings,supervisions}_SPLIT.jsonl.gz
  1 pseudo-label  long-form unlabelled recordings, teacher -> data/NAME/pseudo/NAME_supervisions_SPLIT-pl.jsonl.gz
  2 chunk         recordings + teacher segments -> data/NAME/cuts/NAME_cuts_SPLIT-chunks.jsonl.gz (<= 30 s)
  3 validate      chunks, validator -> data/NAME/cuts/NAME_cuts_SPLIT-validated.jsonl.gz (transcript + distances)
  4 filter        validated chunks -> data/NAME/cuts/NAME_cuts_SPLIT-k2d_METRIC.jsonl.gz, data/NAME/filter_report/
  5 distill       kept cuts, teacher -> exp/NAME/student_METRIC/ (beta*CE + gamma*KL)
  6 decode+score  test sets, all models -> exp/NAME/MODEL/decode_SET/{hyp,ref,errs}.txt, MER summary
  7 report        decode results, models -> exp/NAME/RESULTS.md (speed, size, MER table), exported model

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
[ "$nj" -ge 1 ] || die "--nj must be at least 1"
[ "$stage" -le "$stop_stage" ] || die "--stage $stage is after --stop-stage $stop_stage"
[ "$stop_stage" -le 7 ] || die "--stop-stage must be 0-7, got $stop_stage"
[[ "$device" =~ ^(auto|cpu|cuda(:[0-9]+)?)$ ]] || die "--device must be auto, cpu, cuda or cuda:N, got '$device'"
[ -d "egs/$recipe" ] || die "unknown recipe '$recipe': no directory egs/$recipe (have: $(ls egs | tr '\n' ' '))"

# shellcheck source=path.sh
. ./path.sh

conf="egs/$recipe/conf"
data="data/$recipe"
force_opt=()
[ "$force" = true ] && force_opt=(--force)
started=$(date +%s)
log "$0 $*: recipe $recipe, stages $stage-$stop_stage, device $device"

run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
not_implemented() { die "stage $1 ($2) is not implemented yet"; }

if run_stage 0; then
  log "Stage 0: prepare: $recipe corpus -> $data/manifests"
  corpus_opt=()
  [ -n "$corpus_dir" ] && corpus_opt=(--corpus-dir "$corpus_dir")
  python -m k2d.prepare --recipe "$recipe" --data-dir "$data" --config "$conf/prepare.yaml" \
    --nj "$nj" "${corpus_opt[@]}" "${force_opt[@]}"
fi

if run_stage 1; then
  not_implemented 1 pseudo-label
fi
if run_stage 2; then
  not_implemented 2 chunk
fi
if run_stage 3; then
  not_implemented 3 validate
fi
if run_stage 4; then
  not_implemented 4 filter
fi
if run_stage 5; then
  not_implemented 5 distill
fi
if run_stage 6; then
  not_implemented 6 decode
fi
if run_stage 7; then
  not_implemented 7 report
fi

log "done: stages $stage-$stop_stage of $recipe in $(( $(date +%s) - started )) s"
