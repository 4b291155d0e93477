#!/usr/bin/env bash
# The whole mini_cs_whisper recipe on one GPU, with ten times the CPU recipe's student training (larger
# batches, more steps, bf16): stage 0, the teacher's adaptation, K2D stages 1-7. Made for a session that is
# lent a GPU for a few minutes; --tiny true runs the same path at toy sizes (the test on CPU).
# Every figure lands where the CPU recipe's do: WORK/exp/mini_cs_whisper/RESULTS.md, the students'
# validation.jsonl learning curves, the stage logs; times of each stage in WORK/gpu_times.txt.
#
# Usage: egs/mini_cs_whisper/gpu.sh [--work-dir DIR] [--device cuda] [--nj N] [--tiny true|false]
work_dir=exp_gpu
device=cuda
nj=8
tiny=false
help_message="Usage: $0 [--work-dir DIR] [--device cuda|cpu] [--nj N] [--tiny true|false]"

caller=$PWD  # relative paths given on the command line are the caller's
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=utils/parse_options.sh
. utils/parse_options.sh
# shellcheck source=utils/log.sh
. utils/log.sh
set -euo pipefail
[[ -z "$work_dir" || "$work_dir" = /* ]] || work_dir="$caller/$work_dir"
# shellcheck source=path.sh
. ./path.sh

# 10x the CPU recipe's training: 4x the audio per batch, 2.5x the steps (patience still stops a plateau)
settings=(
  bootstrap_teacher.batch_size=32 bootstrap_teacher.num_workers=4
  distill.max_duration=320 distill.max_steps=7500 distill.min_steps=3750 distill.valid_every=500 distill.num_workers=4
  distill.cache_batch_size=64 distill.amp_dtype=bfloat16
  pseudo_label.batch_size=32 validate.batch_size=64 decode.batch_size=16
)
if [ "$tiny" = true ]; then
  settings+=(
    prepare.train_labelled_utterances=30 prepare.dev_utterances=4 prepare.test_recordings=1 prepare.test_minutes=0.4
    prepare.train_unlabelled_ood_recordings=2 prepare.train_unlabelled_ood_minutes=0.5 prepare.dev_ood_recordings=1
    bootstrap_teacher.batch_size=2 bootstrap_teacher.windows_per_epoch=8 bootstrap_teacher.max_steps=2
    bootstrap_teacher.valid_every=2 bootstrap_teacher.num_workers=0
    distill.max_duration=20 distill.max_steps=2 distill.valid_every=1 distill.num_workers=0 distill.warmup_steps=1
    filter.alpha=1.0 report.bench_seconds=5 report.bench_runs=1   # a 2-step teacher: keep every chunk
  )
fi
conf="$work_dir/conf"
python -m k2d.config egs/mini_cs_whisper/conf "$conf" "${settings[@]}"
log "configs: egs/mini_cs_whisper/conf with ${settings[*]} -> $conf"
started=$(date +%s)
egs/mini_cs_whisper/run.sh --work-dir "$work_dir" --device "$device" --conf-dir "$conf" --nj "$nj" \
  --times "$work_dir/gpu_times.txt"
log "gpu.sh: the whole recipe in $(( $(date +%s) - started )) s; results: $work_dir/exp/mini_cs_whisper/RESULTS.md"
