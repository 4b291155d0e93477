# shellcheck shell=bash
# Puts the k2d virtual environment (made by ./install.sh) on PATH. Sourced by run.sh and the test runner.
K2D_VENV="${K2D_VENV:-$HOME/.cache/k2d/venv}"
if [ ! -x "$K2D_VENV/bin/python" ]; then
  echo "k2d: no virtual environment at $K2D_VENV; run ./install.sh first (or set K2D_VENV)" >&2
  # shellcheck disable=SC2317  # exit is reached when the file is run instead of sourced
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$K2D_VENV/bin/activate"
# k2d itself is used from this clone, not installed into the (shared, cached) environment.
K2D_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$K2D_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# Never reach for the Hugging Face Hub unless the user asks for it (K2D_ALLOW_DOWNLOAD=1).
if [ "${K2D_ALLOW_DOWNLOAD:-0}" != 1 ]; then
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
fi
