#!/usr/bin/env bash
# K2D with a real teacher on the built-in corpus: stage 0, then Whisper base adapted on mini_cs
# train_labelled (the teacher), then stages 1-7 with it on unlabelled audio in test_ood's conditions.
# Needs ./install.sh (which installs Whisper base); takes about 2 h on 2 CPU cores (see RESULTS.md).
#
# Usage: egs/mini_cs_whisper/run.sh [--work-dir DIR] [--device cpu] [--stage N] [--stop-stage M] [--conf-dir DIR]
#        [--nj N] [--times FILE]
# --stage: 0 synthesize, 1 adapt the teacher, 2-8 the K2D stages 1-7 (stage 2 = all of K2D)
work_dir=.
device=auto
stage=0
stop_stage=8
conf_dir=""
nj=1
times=""   # a file that gets one line per part: its name and seconds
help_message="Usage: $0 [--work-dir DIR] [--device DEV] [--stage N] [--stop-stage M] (0 synthesize, 1 adapt the teacher, 2-8: K2D stages 1-7) [--conf-dir DIR] [--nj N] [--times FILE]"

caller=$PWD  # relative paths given on the command line are the caller's
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=utils/parse_options.sh
. utils/parse_options.sh
# shellcheck source=utils/log.sh
. utils/log.sh
set -euo pipefail
[[ -z "$work_dir" || "$work_dir" = /* ]] || work_dir="$caller/$work_dir"
[[ -z "$conf_dir" || "$conf_dir" = /* ]] || conf_dir="$caller/$conf_dir"
# shellcheck source=path.sh
. ./path.sh

conf="${conf_dir:-egs/mini_cs_whisper/conf}"
data="$work_dir/data/mini_cs_whisper"
teacher="$work_dir/exp/mini_cs_whisper/teacher"
run_opts=(--recipe mini_cs_whisper --conf-dir "$conf" --work-dir "$work_dir" --device "$device" --nj "$nj")
timed() {  # NAME COMMAND...: run it, and note its wall time in --times
  local name=$1 begun
  shift
  begun=$(date +%s)
  "$@"
  [ -z "$times" ] || echo "$name $(( $(date +%s) - begun ))" >> "$times"
}
require_int stage "$stage"
require_int stop-stage "$stop_stage"
[ "$stage" -le "$stop_stage" ] || die "--stage $stage is after --stop-stage $stop_stage"
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
if run_stage 0; then
  timed synthesis ./run.sh "${run_opts[@]}" --stage 0 --stop-stage 0
fi
if run_stage 1; then
  log "adapting Whisper base to mini_cs train_labelled -> $teacher"
  timed teacher_adaptation python -m k2d.bootstrap --data-dir "$data" --config "$conf/bootstrap_teacher.yaml" \
    --tokenizer-dir "$work_dir/exp/mini_cs_whisper/bootstrap/tokenizer" \
    --out-dir "$work_dir/exp/mini_cs_whisper/bootstrap/teacher" --export-dir "$teacher" --device "$device" \
    --valid-recordings "$data/manifests/mini_cs_recordings_dev_ood.jsonl.gz" \
    --valid-supervisions "$data/manifests/mini_cs_supervisions_dev_ood.jsonl.gz" --valid-decode-config "$conf/decode.yaml"
fi
for k2d_stage in 1 2 3 4 5 6 7; do
  run_stage $((k2d_stage + 1)) || continue
  timed "k2d_stage_$k2d_stage" ./run.sh "${run_opts[@]}" --stage "$k2d_stage" --stop-stage "$k2d_stage" --teacher "$teacher"
done
