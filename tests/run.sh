#!/usr/bin/env bash
# Runs the k2d test suite in the environment made by ./install.sh.
#   tests/run.sh          the fast tier: unit, CLI, shell and light integration tests (under 3 minutes)
#   tests/run.sh --all    both tiers: adds the slow one (corpus synthesis, end-to-end recipes, real Whisper
#                         weights, multi-process training, benchmarks); this is what CI runs
# Other arguments go to pytest.
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=path.sh
. ./path.sh
set -euo pipefail
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
tier=(-m "not slow")
if [ "${1:-}" = --all ]; then
  tier=()
  shift
fi
exec python -m pytest tests "${tier[@]}" "$@"
