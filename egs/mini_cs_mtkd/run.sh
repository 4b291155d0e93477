#!/usr/bin/env bash
# Multi-teacher encoder KD (seed 002) on the mini_cs corpus, trained by ESPnet's own trainer:
#   stage 0  the mini_cs corpus (./run.sh --recipe mini_cs --stage 0 --stop-stage 0)
#   stage 1  cuts: labelled utterances (fine-tuning; their audio is the pre-training audio), dev utterances,
#            extra unlabelled audio (train_unlabelled in windows); ESPnet ASR data dirs; sentencepiece tokens
#   stage 2  teacher embeddings (k2d.mtkd.embed) of the pre-training audio, with and without the extra audio
#   stage 3  encoder pre-training (k2d.mtkd.task): one teacher; several; several + extra audio
#   stage 4  fine-tuning (ESPnet's asr_train through k2d.espnet.asr_train: a transducer, or CTC/attention with
#            --finetune-config conf/finetune_ctc_attention.yaml), from scratch and from each pre-trained encoder
#   stage 5  decoding and scoring (k2d.espnet.decode_asr) of test_in and test_ood, utterance by utterance;
#            the results table (exp/mini_cs_mtkd/RESULTS.md)
#
# Usage: egs/mini_cs_mtkd/run.sh [--work-dir DIR] [--device cpu] [--stage N] [--stop-stage M] [--conf-dir DIR]
#        [--finetune-config FILE]
work_dir=.
device=auto
stage=0
stop_stage=5
conf_dir=""
finetune_config=""  # default: CONF_DIR/finetune.yaml
help_message="Usage: $0 [--work-dir DIR] [--device DEV] [--stage N] [--stop-stage M] [--conf-dir DIR] [--finetune-config FILE]"

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

conf="${conf_dir:-egs/mini_cs_mtkd/conf}"
finetune_config="${finetune_config:-$conf/finetune.yaml}"
data="$work_dir/data/mini_cs_mtkd"
exp="$work_dir/exp/mini_cs_mtkd"
manifests="$work_dir/data/mini_cs/manifests"
ngpu=0  # ESPnet's: one GPU when the device is (or may be) CUDA and one is there
if [ "$device" != cpu ] && python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then ngpu=1; fi
# The systems: NAME=TEACHERS:PRETRAINING-AUDIO[:SEED] (none: no pre-training); the first is the baseline.
# Teachers (conf/teachers.txt): NAME=MODEL:LAYERS, one per line; {work_dir} in MODEL is --work-dir.
read -r -a systems <<< "$(grep -v '^#' "$conf/systems.txt" | sed 's/[[:space:]]*#.*//' | tr '\n' ' ')"
read -r -a teachers <<< "$(grep -v '^#' "$conf/teachers.txt" | sed 's/[[:space:]]*#.*//' | tr '\n' ' ')"
teachers=("${teachers[@]//\{work_dir\}/$work_dir}")
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
cuts() { echo "$data/cuts/mini_cs_mtkd_cuts_$1.jsonl.gz"; }
# NAME=TEACHERS:AUDIO[:SEED] -> "NAME TEACHERS AUDIO SEED" (seed 0 when not given)
system_fields() {
  local name=${1%%=*} spec=${1#*=}
  local names=${spec%%:*} rest=${spec#*:}
  local audio=${rest%%:*} seed=0
  [ "$rest" = "$audio" ] || seed=${rest#*:}
  echo "$name $names $audio $seed"
}

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

teacher_opts=()
for teacher in "${teachers[@]}"; do teacher_opts+=(--teacher "$teacher"); done
if run_stage 2; then
  for teacher in "${teachers[@]}"; do
    model=${teacher#*=}
    model=${model%:*}
    [[ "$model" != */* || -e "$model" ]] || die "teacher ${teacher%%=*}: $model does not exist (the adapted \
Whisper teacher comes from egs/mini_cs_whisper/run.sh --work-dir $work_dir --stage 0, its stages 0-1; or drop it \
from $conf/teachers.txt and $conf/systems.txt)"
  done
  for set in pretrain extra valid; do
    log "Stage 2: teacher embeddings of $set (${teachers[*]}) -> $data/embeddings/$set.jsonl.gz"
    python -m k2d.mtkd.embed --cuts "$(cuts $set)" "${teacher_opts[@]}" --output "$data/embeddings/$set.jsonl.gz" \
      --device "$device"
  done
  # ESPnet data dirs: the pre-training audio, the same plus the extra audio, validation
  python -m k2d.mtkd.data_dir --embeddings "$data/embeddings/pretrain.jsonl.gz" \
    --out-dir "$data/espnet/emb_labelled"
  python -m k2d.mtkd.data_dir --embeddings "$data/embeddings/pretrain.jsonl.gz" \
    --embeddings "$data/embeddings/extra.jsonl.gz" --out-dir "$data/espnet/emb_labelled+extra"
  python -m k2d.mtkd.data_dir --embeddings "$data/embeddings/valid.jsonl.gz" --out-dir "$data/espnet/emb_valid"
fi

# data options of an ESPnet pre-training run: SPLIT TEACHERS DIR
embed_data() {
  local split=$1 names=$2 dir=$3
  echo "--${split}_data_path_and_name_and_type $dir/wav.scp,speech,sound --${split}_shape_file $dir/speech_shape"
  for target in $(python -c "import sys, yaml; t = yaml.safe_load(open(sys.argv[1])); \
print(' '.join(n for n in t if n.rsplit('_l', 1)[0] in sys.argv[2].split(',')))" "$dir/targets.yaml" "$names"); do
    echo "--${split}_data_path_and_name_and_type $dir/$target.h5,$target,hdf5"
  done
}

if run_stage 3; then
  for system in "${systems[@]}"; do
    read -r name names audio seed <<< "$(system_fields "$system")"
    [ "$names" = none ] && continue
    out="$exp/pretrain_$name"
    # ESPnet writes valid.loss.ave.pth when a run ends (valid.loss.best.pth already after its first epoch);
    # a stopped run resumes from its checkpoint.pth (--resume true)
    [ -f "$out/valid.loss.ave.pth" ] && { log "Stage 3: $out finished: skipping"; continue; }
    log "Stage 3: pre-train the encoder on teachers $names ($audio audio) -> $out (log: $out/train.log)"
    mkdir -p "$out"
    python -m k2d.recipes.mini_cs.mtkd config --student "$conf/student.yaml" --stage "$conf/pretrain.yaml" \
      --targets "$data/espnet/emb_valid/targets.yaml" --teachers "$names" --output "$out/k2d_config.yaml"
    [ -d "$data/espnet/emb_$audio" ] || die "system $name: pre-training audio must be labelled or labelled+extra"
    # shellcheck disable=SC2046  # one option per word
    python -m k2d.mtkd.task --config "$out/k2d_config.yaml" --output_dir "$out" --ngpu "$ngpu" --seed "$seed" --resume true \
      $(embed_data train "$names" "$data/espnet/emb_$audio") $(embed_data valid "$names" "$data/espnet/emb_valid") \
      >> "$out/train.log" 2>&1 || die "pre-training $name failed: see $out/train.log"
  done
fi

if run_stage 4; then
  for system in "${systems[@]}"; do
    read -r name names audio seed <<< "$(system_fields "$system")"
    out="$exp/asr_$name"
    [ -f "$out/valid.loss.ave.pth" ] && { log "Stage 4: $out finished: skipping"; continue; }
    log "Stage 4: fine-tune ($name) -> $out (log: $out/train.log)"
    mkdir -p "$out"
    python -m k2d.recipes.mini_cs.mtkd config --student "$conf/student.yaml" --stage "$finetune_config" \
      --output "$out/k2d_config.yaml"
    init=()
    [ "$names" = none ] || init=(--init_param "$exp/pretrain_$name/valid.loss.best.pth:encoder:encoder")
    python -m k2d.espnet.asr_train --config "$out/k2d_config.yaml" --output_dir "$out" --ngpu "$ngpu" --seed "$seed" --resume true \
      --token_list "$data/tokens/tokens.txt" --bpemodel "$data/tokens/bpe.model" "${init[@]}" \
      --train_data_path_and_name_and_type "$data/espnet/asr_finetune/wav.scp,speech,sound" \
      --train_data_path_and_name_and_type "$data/espnet/asr_finetune/text,text,text" \
      --train_shape_file "$data/espnet/asr_finetune/speech_shape" \
      --valid_data_path_and_name_and_type "$data/espnet/asr_valid/wav.scp,speech,sound" \
      --valid_data_path_and_name_and_type "$data/espnet/asr_valid/text,text,text" \
      --valid_shape_file "$data/espnet/asr_valid/speech_shape" >> "$out/train.log" 2>&1 \
      || die "fine-tuning $name failed: see $out/train.log"
  done
fi

if run_stage 5; then
  names=()
  for system in "${systems[@]}"; do
    name=${system%%=*}
    names+=("$name")
    for set in test_in test_ood; do
      log "Stage 5: decode $set with $name -> $exp/asr_$name/decode_${set}_short"
      python -m k2d.espnet.decode_asr --asr-config "$exp/asr_$name/config.yaml" \
        --asr-model "$exp/asr_$name/valid.loss.best.pth" --device "$device" \
        --recordings "$manifests/mini_cs_recordings_$set.jsonl.gz" \
        --supervisions "$manifests/mini_cs_supervisions_$set.jsonl.gz" --out-dir "$exp/asr_$name/decode_${set}_short"
    done
  done
  list=$(IFS=,; echo "${names[*]}")
  python -m k2d.recipes.mini_cs.mtkd results --exp-dir "$exp" --systems "$list" \
    --curves "$exp/learning_curves.png" --made-by | tee "$exp/RESULTS.md"
fi
