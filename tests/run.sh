#!/usr/bin/env bash
# Runs the k2d test suite in the environment made by ./install.sh (extra arguments go to pytest).
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=path.sh
. ./path.sh
set -euo pipefail
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec python -m pytest tests "$@"
