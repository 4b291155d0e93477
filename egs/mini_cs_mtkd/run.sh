#!/usr/bin/env bash
# Multi-teacher encoder KD (seed 002) on the mini_cs corpus, trained by ESPnet's own trainer:
#   stage 0  the mini_cs corpus (./run.sh --recipe mini_cs --stage 0 --stop-stage 0)
#   stage 1  cuts: labelled utterances (fine-tuning; their audio is the pre-training audio), dev utterances,
#            extra unlabelled audio (train_unlabelled in windows); ESPnet ASR data dirs; sentencepiece tokens
#   stage 2  teacher embeddings (k2d.mtkd.embed) of the pre-training audio, with and without the extra audio
#   stage 3  encoder pre-training (k2d.mtkd.task): one teacher; several; several + extra audio
#   stage 4  fine-tuning (ESPnet's asr_train through k2d.espnet.asr_train: a transducer, or CTC/attention with
#            --finetune-config conf/finetune_ctc_attention.yaml), from scratch and from each pre-trained encoder,
#            in two phases: the pre-trained encoder frozen, then every parameter at a lower rate
#   stage 5  decoding and scoring (k2d.espnet.decode_asr) of test_in and test_ood, utterance by utterance;
#            the results table and learning curves (exp/mini_cs_mtkd/RESULTS.md, learning_curves.png)
# Paths come from k2d/layout.py (EspnetLayout), the common options and steps from utils/espnet_recipe.sh.
#
# Usage: egs/mini_cs_mtkd/run.sh [--work-dir DIR] [--device cpu] [--stage N] [--stop-stage M] [--conf-dir DIR]
#        [--cmd local|slurm] [--finetune-config FILE]
recipe=mini_cs_mtkd
stop_stage=5
finetune_config=""  # default: CONF_DIR/finetune.yaml
help_message="Usage: $0 [--work-dir DIR] [--device DEV] [--stage N] [--stop-stage M (0-5)] [--conf-dir DIR] [--cmd local|slurm] [--finetune-config FILE]"

caller=$PWD  # relative paths given on the command line are the caller's
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=utils/espnet_recipe.sh
. utils/espnet_recipe.sh
[[ -z "$finetune_config" || "$finetune_config" = /* ]] || finetune_config="$caller/$finetune_config"
finetune_config="${finetune_config:-$conf/finetune.yaml}"
exp=${L[exp]}
# The systems: NAME=TEACHERS:PRETRAINING-AUDIO[:SEED] (none: no pre-training); the first is the baseline.
# Teachers (conf/teachers.txt): NAME=MODEL:LAYERS, one per line; {work_dir} in MODEL is --work-dir.
read -r -a systems <<< "$(grep -v '^#' "$conf/systems.txt" | sed 's/[[:space:]]*#.*//' | tr '\n' ' ')"
read -r -a teachers <<< "$(grep -v '^#' "$conf/teachers.txt" | sed 's/[[:space:]]*#.*//' | tr '\n' ' ')"
teachers=("${teachers[@]//\{work_dir\}/$work_dir}")
# NAME=TEACHERS:AUDIO[:SEED] -> "NAME TEACHERS AUDIO SEED" (seed 0 when not given)
system_fields() {
  local name=${1%%=*} spec=${1#*=}
  local names=${spec%%:*} rest=${spec#*:}
  local audio=${rest%%:*} seed=0
  [ "$rest" = "$audio" ] || seed=${rest#*:}
  echo "$name $names $audio $seed"
}

run_stage 0 && prepare_corpus
run_stage 1 && prepare_data

teacher_opts=()
for teacher in "${teachers[@]}"; do teacher_opts+=(--teacher "$teacher"); done
if run_stage 2; then
  for teacher in "${teachers[@]}"; do
    model=${teacher#*=}
    model=${model%:*}
    [[ "$model" != */* || -e "$model" ]] || die "teacher ${teacher%%=*}: $model does not exist (the adapted \
Whisper teacher comes from egs/mini_cs_whisper/run.sh --work-dir $work_dir --stop-stage 1; or drop it \
from $conf/teachers.txt and $conf/systems.txt)"
  done
  for set in pretrain extra valid; do
    log "Stage 2: teacher embeddings of $set (${teachers[*]}) -> ${L[embeddings]}/$set.jsonl.gz"
    python -m k2d.mtkd.embed --cuts "${L[cuts:$set]}" "${teacher_opts[@]}" --output "${L[embeddings]}/$set.jsonl.gz" \
      --device "$device"
  done
  # ESPnet data dirs: the pre-training audio, the same plus the extra audio, validation
  python -m k2d.mtkd.data_dir --embeddings "${L[embeddings]}/pretrain.jsonl.gz" --out-dir "${L[espnet]}/emb_labelled"
  python -m k2d.mtkd.data_dir --embeddings "${L[embeddings]}/pretrain.jsonl.gz" \
    --embeddings "${L[embeddings]}/extra.jsonl.gz" --out-dir "${L[espnet]}/emb_labelled+extra"
  python -m k2d.mtkd.data_dir --embeddings "${L[embeddings]}/valid.jsonl.gz" --out-dir "${L[espnet]}/emb_valid"
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
    [ -d "${L[espnet]}/emb_$audio" ] || die "system $name: pre-training audio must be labelled or labelled+extra"
    mkdir -p "$out"
    python -m k2d.espnet.recipe config --student "$conf/student.yaml" --stage "$conf/pretrain.yaml" \
      --targets "${L[espnet]}/emb_valid/targets.yaml" --teachers "$names" --output "$out/k2d_config.yaml"
    # shellcheck disable=SC2046  # one option per word
    espnet_train "Stage 3: pre-train the encoder on teachers $names ($audio audio)" "$out" k2d.mtkd.task \
      --config "$out/k2d_config.yaml" --seed "$seed" \
      $(embed_data train "$names" "${L[espnet]}/emb_$audio") $(embed_data valid "$names" "${L[espnet]}/emb_valid")
  done
fi

# one ESPnet fine-tuning run: NAME (for the log) OUT-DIR SEED [--init_param ...]; its config is OUT-DIR/k2d_config.yaml
fine_tune() {
  local name=$1 out=$2 seed=$3
  shift 3
  # shellcheck disable=SC2046  # one option per word
  espnet_train "Stage 4: fine-tune ($name)" "$out" k2d.espnet.asr_train --config "$out/k2d_config.yaml" \
    --seed "$seed" --token_list "${L[tokens]}/tokens.txt" --bpemodel "${L[tokens]}/bpe.model" "$@" \
    $(asr_data train "${L[espnet]}/asr_finetune") $(asr_data valid "${L[espnet]}/asr_valid")
}

if run_stage 4; then
  for system in "${systems[@]}"; do
    read -r name names audio seed <<< "$(system_fields "$system")"
    # Phase 1 (exp/asr_NAME_phase1): a pre-trained encoder stays frozen (conf/finetune_frozen.yaml) while the
    # rest learns; without pre-training everything learns. Phase 2 (exp/asr_NAME): every parameter, from phase
    # 1's best model, at the lower rate of conf/finetune_phase2.yaml. Each phase to its dev plateau.
    phase1="$exp/asr_${name}_phase1"
    stages=(--stage "$finetune_config")
    init=()
    if [ "$names" != none ]; then
      stages+=(--stage "$conf/finetune_frozen.yaml")
      init=(--init_param "$(python -m k2d.espnet.recipe best --run-dir "$exp/pretrain_$name"):encoder:encoder")
    fi
    mkdir -p "$phase1" "$exp/asr_$name"
    python -m k2d.espnet.recipe config --student "$conf/student.yaml" "${stages[@]}" --output "$phase1/k2d_config.yaml"
    fine_tune "$name, phase 1" "$phase1" "$seed" "${init[@]}"
    python -m k2d.espnet.recipe config --student "$conf/student.yaml" --stage "$finetune_config" \
      --stage "$conf/finetune_phase2.yaml" --output "$exp/asr_$name/k2d_config.yaml"
    fine_tune "$name, phase 2" "$exp/asr_$name" "$seed" \
      --init_param "$(python -m k2d.espnet.recipe best --run-dir "$phase1")"
  done
fi

if run_stage 5; then
  names=()
  for system in "${systems[@]}"; do
    name=${system%%=*}
    names+=("$name")
    model=$(python -m k2d.espnet.recipe best --run-dir "$exp/asr_$name")
    for set in ${L[test_sets]}; do
      log "Stage 5: decode $set with $name -> $exp/asr_$name/decode_${set}_short"
      python -m k2d.espnet.decode_asr --asr-config "$exp/asr_$name/config.yaml" \
        --asr-model "$model" --device "$device" \
        --recordings "${L[recordings:$set]}" --supervisions "${L[supervisions:$set]}" \
        --out-dir "$exp/asr_$name/decode_${set}_short"
    done
  done
  list=$(IFS=,; echo "${names[*]}")
  python -m k2d.espnet.recipe results --exp-dir "$exp" --systems "$list" \
    --curves "$exp/learning_curves.png" --made-by | tee "$exp/RESULTS.md"
fi
