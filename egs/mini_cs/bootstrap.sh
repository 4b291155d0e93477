#!/usr/bin/env bash
# Trains the demo's own teacher and validator on mini_cs train_labelled and exports them (float16
# safetensors) to egs/mini_cs/models/{teacher,validator}. Not part of ./run.sh: the trained models ship in
# the repository; run this to reproduce or change them (after stage 0 has synthesized the corpus).
#
# Usage: egs/mini_cs/bootstrap.sh [--device cpu] [--which "teacher validator"]
device=auto
which="teacher validator"
help_message="Usage: $0 [--device DEV] [--which \"teacher validator\"]"

cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=utils/parse_options.sh
. utils/parse_options.sh
# shellcheck source=utils/log.sh
. utils/log.sh
set -euo pipefail
# shellcheck source=path.sh
. ./path.sh

exp=exp/mini_cs/bootstrap
[ -f data/mini_cs/manifests/mini_cs_recordings_train_labelled.jsonl.gz ] \
  || ./run.sh --stage 0 --stop-stage 0
for model in $which; do
  log "training the demo $model: data/mini_cs train_labelled -> $exp/$model -> egs/mini_cs/models/$model"
  python -m k2d.bootstrap --data-dir data/mini_cs --config "egs/mini_cs/conf/bootstrap_$model.yaml" \
    --tokenizer-dir "$exp/tokenizer" --out-dir "$exp/$model" --export-dir "egs/mini_cs/models/$model" --device "$device"
done
