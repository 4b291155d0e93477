#!/usr/bin/env bash
# Streaming KD (seed 003) on the mini_cs corpus, trained by ESPnet's own trainer:
#   stage 0  the mini_cs corpus (./run.sh --recipe mini_cs --stage 0 --stop-stage 0)
#   stage 1  cuts (labelled utterances, dev utterances), ESPnet ASR data dirs, sentencepiece tokens
#   stage 2  the non-streaming teacher: the same model with full-context attention (chunk_size 0)
#   stage 3  the streaming students (conf/systems.txt): alone; token KD; layer KD; auxiliary non-streaming
#            branches; branches + APC (k2d.streaming.task)
#   stage 4  export (teacher, heads and branches dropped), streaming decoding of test_in and test_ood at each
#            --decode-chunks-ms (k2d.streaming.stream: MER, compute per chunk, first-token delay); the teacher decoded
#            with full context; the tables (exp/mini_cs_streaming/RESULTS.md)
#
# Usage: egs/mini_cs_streaming/run.sh [--work-dir DIR] [--device cpu] [--stage N] [--stop-stage M]
#        [--conf-dir DIR] [--decode-chunks-ms "320 640"]
work_dir=.
device=auto
stage=0
stop_stage=4
conf_dir=""
decode_chunks_ms="320 640"
help_message="Usage: $0 [--work-dir DIR] [--device DEV] [--stage N] [--stop-stage M] [--conf-dir DIR] [--decode-chunks-ms LIST]"

cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=utils/parse_options.sh
. utils/parse_options.sh
# shellcheck source=utils/log.sh
. utils/log.sh
set -euo pipefail
# shellcheck source=path.sh
. ./path.sh
require_int stage "$stage"
require_int stop-stage "$stop_stage"

conf="${conf_dir:-egs/mini_cs_streaming/conf}"
data="$work_dir/data/mini_cs_streaming"
exp="$work_dir/exp/mini_cs_streaming"
manifests="$work_dir/data/mini_cs/manifests"
ngpu=0  # ESPnet's: one GPU when the device is (or may be) CUDA and one is there
if [ "$device" != cpu ] && python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then ngpu=1; fi
# NAME=KD:APC_SHIFT, one per line; the first is the baseline
read -r -a systems <<< "$(grep -v '^#' "$conf/systems.txt" | tr '\n' ' ')"
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
cuts() { echo "$data/cuts/mini_cs_mtkd_cuts_$1.jsonl.gz"; }

if run_stage 0; then
  log "Stage 0: the mini_cs corpus -> $manifests"
  ./run.sh --recipe mini_cs --stage 0 --stop-stage 0 --work-dir "$work_dir"
fi

if run_stage 1; then
  log "Stage 1: cuts, ESPnet data dirs, tokens -> $data"
  python -m k2d.recipes.mini_cs.mtkd cuts --manifests "$manifests" --config "$conf/data.yaml" --out-dir "$data/cuts"
  for set in finetune valid; do
    python -m k2d.espnet.data_dir --cuts "$(cuts $set)" --out-dir "$data/espnet/asr_$set" --dump-audio
  done
  python -m k2d.espnet.tokens --text "$data/espnet/asr_finetune/text" --vocab-size 500 --out-dir "$data/tokens"
fi

# train NAME [ESPnet options]: one model by ESPnet's trainer into $exp/asr_NAME
train() {
  local name=$1 out="$exp/asr_$1"
  shift
  # ESPnet writes valid.loss.ave.pth when a run ends (valid.loss.best.pth already after its first epoch)
  [ -f "$out/valid.loss.ave.pth" ] && { log "$out finished: skipping"; return; }
  log "train $name -> $out (log: $out/train.log)"
  mkdir -p "$out"
  python -m k2d.streaming.task --config "$conf/train.yaml" --output_dir "$out" --ngpu "$ngpu" --resume true \
    --token_list "$data/tokens/tokens.txt" --bpemodel "$data/tokens/bpe.model" \
    --train_data_path_and_name_and_type "$data/espnet/asr_finetune/wav.scp,speech,sound" \
    --train_data_path_and_name_and_type "$data/espnet/asr_finetune/text,text,text" \
    --train_shape_file "$data/espnet/asr_finetune/speech_shape" \
    --valid_data_path_and_name_and_type "$data/espnet/asr_valid/wav.scp,speech,sound" \
    --valid_data_path_and_name_and_type "$data/espnet/asr_valid/text,text,text" \
    --valid_shape_file "$data/espnet/asr_valid/speech_shape" "$@" >> "$out/train.log" 2>&1 \
    || die "training $name failed: see $out/train.log"
}

if run_stage 2; then
  log "Stage 2: the non-streaming teacher (full context)"
  train teacher --streaming_encoder_conf chunk_size=0 --model_conf kd=none --model_conf apc_shift=0
fi

if run_stage 3; then
  for system in "${systems[@]}"; do
    name=${system%%=*}
    spec=${system#*=}
    log "Stage 3: streaming student $name (kd ${spec%%:*}, APC shift ${spec#*:})"
    train "$name" --model_conf "kd=${spec%%:*}" --model_conf "apc_shift=${spec#*:}" \
      --teacher_config "$exp/asr_teacher/config.yaml" --teacher_model "$exp/asr_teacher/valid.loss.best.pth"
  done
fi

if run_stage 4; then
  names=()
  decode() {  # decode NAME CHUNK_MS SUFFIX
    for set in test_in test_ood; do
      [ -f "$exp/asr_$1/decode_${set}_$3/scores.yaml" ] && continue
      python -m k2d.streaming.stream --model "$exp/asr_$1/export" --chunk-ms "$2" \
        --recordings "$manifests/mini_cs_recordings_$set.jsonl.gz" \
        --supervisions "$manifests/mini_cs_supervisions_$set.jsonl.gz" --out-dir "$exp/asr_$1/decode_${set}_$3"
    done
  }
  for system in teacher "${systems[@]}"; do
    name=${system%%=*}
    log "Stage 4: export and decode $name"
    python -m k2d.streaming.task export --config "$exp/asr_$name/config.yaml" \
      --checkpoint "$exp/asr_$name/valid.loss.best.pth" --out-dir "$exp/asr_$name/export" > /dev/null
    if [ "$name" = teacher ]; then decode teacher 0 full; continue; fi
    names+=("$name")
    for ms in $decode_chunks_ms; do decode "$name" "$ms" "${ms}ms"; done
  done
  sets=()
  for ms in $decode_chunks_ms; do sets+=("test_in_${ms}ms" "test_ood_${ms}ms"); done
  {
    echo "## Streaming students (MER %, relative change vs ${names[0]})"
    python -m k2d.recipes.mini_cs.mtkd results --exp-dir "$exp" --systems "$(IFS=,; echo "${names[*]}")" \
      --test-sets "$(IFS=,; echo "${sets[*]}")" --curves "$exp/learning_curves.png"
    echo
    echo "## Non-streaming teacher (full context)"
    python -m k2d.recipes.mini_cs.mtkd results --exp-dir "$exp" --systems teacher --test-sets test_in_full,test_ood_full
    echo
    echo "## Latency (k2d.streaming.stream, this machine)"
    python -m k2d.recipes.mini_cs.streaming --exp-dir "$exp"
  } | tee "$exp/RESULTS.md"
fi
