#!/usr/bin/env bash
# Streaming KD (seed 003) on the mini_cs corpus, trained by ESPnet's own trainer:
#   stage 0  the mini_cs corpus (./run.sh --recipe mini_cs --stage 0 --stop-stage 0)
#   stage 1  cuts (labelled utterances, dev utterances), ESPnet ASR data dirs, sentencepiece tokens
#   stage 2  the non-streaming teacher: the same model with full-context attention (chunk_size 0)
#   stage 3  the streaming students (conf/systems.txt): alone; token KD; layer KD; auxiliary non-streaming
#            branches; branches + APC (k2d.streaming.task)
#   stage 4  export (teacher, heads and branches dropped), streaming decoding of test_in and test_ood at each
#            --decode-chunks-ms (k2d.streaming.stream: MER, compute per chunk, first-token delay); the teacher decoded
#            with full context; each student's sherpa-onnx exports (k2d.streaming.onnx: the CTC head, the stateless
#            transducer; float32 and int8) decoded by sherpa-onnx beside k2d's decoding of the same head; the
#            tables and learning curves
#            (exp/mini_cs_streaming/RESULTS.md, learning_curves.png)
# Every model is a transducer (conf/train.yaml head; or ctc) trained to its dev plateau (patience); a stopped
# run resumes from its checkpoint.pth when run again. Paths come from k2d/layout.py (EspnetLayout), the common
# options and steps from utils/espnet_recipe.sh.
#
# Usage: egs/mini_cs_streaming/run.sh [--work-dir DIR] [--device cpu] [--stage N] [--stop-stage M]
#        [--conf-dir DIR] [--cmd local|slurm] [--decode-chunks-ms "320 640"]
recipe=mini_cs_streaming
stop_stage=4
decode_chunks_ms="320 640"
help_message="Usage: $0 [--work-dir DIR] [--device DEV] [--stage N] [--stop-stage M (0-4)] [--conf-dir DIR] [--cmd local|slurm] [--decode-chunks-ms LIST]"

caller=$PWD  # relative paths given on the command line are the caller's
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=utils/espnet_recipe.sh
. utils/espnet_recipe.sh
exp=${L[exp]}
# NAME=KD:APC_SHIFT[:APC_ON], one per line; the first is the baseline
read -r -a systems <<< "$(grep -v '^#' "$conf/systems.txt" | sed 's/[[:space:]]*#.*//' | tr '\n' ' ')"

run_stage 0 && prepare_corpus
run_stage 1 && prepare_data

# train NAME [ESPnet options]: one model by ESPnet's trainer into $exp/asr_NAME
train() {
  local name=$1
  shift
  # shellcheck disable=SC2046  # one option per word
  espnet_train "train $name" "$exp/asr_$name" k2d.streaming.task --config "$conf/train.yaml" \
    --token_list "${L[tokens]}/tokens.txt" --bpemodel "${L[tokens]}/bpe.model" \
    $(asr_data train "${L[espnet]}/asr_finetune") $(asr_data valid "${L[espnet]}/asr_valid") "$@"
}

if run_stage 2; then
  log "Stage 2: the non-streaming teacher (full context)"
  train teacher --streaming_encoder_conf chunk_size=0 --model_conf kd=none --model_conf apc_shift=0
fi

if run_stage 3; then
  for system in "${systems[@]}"; do
    name=${system%%=*}
    IFS=, read -r -a parts <<< "${system#*=}"
    IFS=: read -r kd apc_shift apc_on <<< "${parts[0]}"
    overrides=()  # this student's own options (KEY=VALUE after the commas) over conf/train.yaml's: the trainer's
    for option in "${parts[@]:1}"; do  # seed, or a model_conf option
      if [ "${option%%=*}" = seed ]; then overrides+=(--seed "${option#*=}"); else overrides+=(--model_conf "$option"); fi
    done
    log "Stage 3: streaming student $name (kd $kd, APC shift $apc_shift on ${apc_on:-stream}${parts[1]:+, ${parts[*]:1}})"
    teacher=()  # a student without KD or APC trains without running the teacher
    if [ "$kd" != none ] || [ "$apc_shift" != 0 ]; then
      teacher=(--teacher_config "$exp/asr_teacher/config.yaml"
               --teacher_model "$(python -m k2d.espnet.recipe best --run-dir "$exp/asr_teacher")")
    fi
    train "$name" --model_conf "kd=$kd" --model_conf "apc_shift=$apc_shift" --model_conf "apc_on=${apc_on:-stream}" \
      "${overrides[@]}" "${teacher[@]}"
  done
fi

if run_stage 4; then
  names=()
  scored_sets="${L[dev_set]} ${L[test_sets]}"  # dev too: the set every choice was made on (conf/systems.txt)
  # the silence after each utterance in the deployment comparison, given to sherpa-onnx (which decodes whole
  # chunks only) and to k2d alike: the trained chunk (conf/train.yaml: 8 frames of 40 ms) + 100 ms
  sherpa_tail_ms=420
  beam=4  # the transducer's modified beam search (--beam), at the first of --decode-chunks-ms
  beam_ms=${decode_chunks_ms%% *}
  decode() {  # decode "SETS" NAME SUFFIX MODULE OPTIONS...: each of SETS into asr_NAME/decode_SET_SUFFIX
    local sets=$1 name=$2 suffix=$3 module=$4
    shift 4
    for set in $sets; do
      [ -f "$exp/asr_$name/decode_${set}_$suffix/scores.yaml" ] && continue
      python -m "$module" --model "$exp/asr_$name/export" "$@" \
        --recordings "${L[recordings:$set]}" --supervisions "${L[supervisions:$set]}" \
        --out-dir "$exp/asr_$name/decode_${set}_$suffix"
    done
  }
  for system in teacher "${systems[@]}"; do
    name=${system%%=*}
    log "Stage 4: export and decode $name"
    python -m k2d.streaming.task export --config "$exp/asr_$name/config.yaml" \
      --checkpoint "$(python -m k2d.espnet.recipe best --run-dir "$exp/asr_$name")" --out-dir "$exp/asr_$name/export" > /dev/null
    if [ "$name" = teacher ]; then
      decode "$scored_sets" teacher full k2d.streaming.stream --chunk-ms 0
      continue
    fi
    names+=("$name")
    for ms in $decode_chunks_ms; do
      decode "$scored_sets" "$name" "${ms}ms" k2d.streaming.stream --chunk-ms "$ms"
    done
    heads=$(python -m k2d.streaming.onnx --model "$exp/asr_$name/export" --list-heads | tail -n 1)
    if [[ " $heads " = *" transducer "* ]]; then
      decode "$scored_sets" "$name" "${beam_ms}ms_beam$beam" k2d.streaming.stream --chunk-ms "$beam_ms" --beam "$beam"
    fi
    # deployment: each head sherpa-onnx can run (CTC; a stateless transducer), at the trained chunk, decoded by
    # k2d and by sherpa-onnx (float32, int8); the decodings' names are those k2d.streaming.latency reads
    # (the last line: ESPnet's import prints a notice about flash attention to stdout)
    for head in $heads; do
      if [ "$head" = ctc ]; then
        sherpa=$exp/asr_$name/export_sherpa suffix=sherpa
        decode "${L[test_sets]}" "$name" ctc k2d.streaming.stream --ctc --tail-ms "$sherpa_tail_ms"
      else  # sherpa-onnx's greedy search emits at most one token per frame
        sherpa=$exp/asr_$name/export_sherpa_rnnt suffix=sherpa_rnnt
        decode "${L[test_sets]}" "$name" max1 k2d.streaming.stream --max-symbols 1 --tail-ms "$sherpa_tail_ms"
      fi
      python -m k2d.streaming.onnx --model "$exp/asr_$name/export" --out "$sherpa" --head "$head" --int8
      decode "${L[test_sets]}" "$name" "$suffix" k2d.streaming.sherpa --sherpa "$sherpa" --tail-ms "$sherpa_tail_ms"
      decode "${L[test_sets]}" "$name" "${suffix}_int8" k2d.streaming.sherpa --sherpa "$sherpa" --int8 \
        --tail-ms "$sherpa_tail_ms"
    done
  done
  sets=()
  for ms in $decode_chunks_ms; do for set in $scored_sets; do sets+=("${set}_${ms}ms"); done; done
  {
    echo "## Streaming students (MER %, relative change vs ${names[0]})"
    python -m k2d.espnet.recipe results --exp-dir "$exp" --systems "$(IFS=,; echo "${names[*]}")" \
      --test-sets "$(IFS=,; echo "${sets[*]}")" --curves "$exp/learning_curves.png"
    echo
    echo "## Transducer search at ${beam_ms} ms: greedy, and modified beam search with $beam hypotheses (k2d.streaming.stream --beam)"
    searched=()
    for set in $scored_sets; do searched+=("${set}_${beam_ms}ms" "${set}_${beam_ms}ms_beam$beam"); done
    python -m k2d.espnet.recipe results --exp-dir "$exp" --systems "$(IFS=,; echo "${names[*]}")" \
      --test-sets "$(IFS=,; echo "${searched[*]}")"
    echo
    echo "## Non-streaming teacher (full context)"
    python -m k2d.espnet.recipe results --exp-dir "$exp" --systems teacher --test-sets "${L[dev_set]}_full,test_in_full,test_ood_full"
    echo
    echo "## Deployment: sherpa-onnx (each head at the trained chunk, k2d.streaming.onnx / k2d.streaming.sherpa)"
    python -m k2d.streaming.latency --exp-dir "$exp" --deployment "$(IFS=,; echo "${names[*]}")" \
      --test-sets "${L[test_sets]// /,}"
    echo
    echo "## Latency (k2d.streaming.stream and k2d.streaming.sherpa, this machine)"
    python -m k2d.streaming.latency --exp-dir "$exp"
  } | tee "$exp/RESULTS.md"
fi
