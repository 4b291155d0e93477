#!/usr/bin/env bash
# Scores a hypothesis text file against a reference (Kaldi text files: <id> <transcript> per line).
# Usage: local/score.sh REF HYP [OUT_DIR]
# Prints the one-line summary (MER with S/D/I, Mandarin CER, English WER, repetitive hallucinations) and
# writes OUT_DIR/{errs.txt,scores.yaml,summary.txt} (OUT_DIR defaults to HYP's directory).
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "Usage: $0 REF HYP [OUT_DIR]" >&2
  exit 1
fi
ref=$(realpath -m "$1")
hyp=$(realpath -m "$2")
out_opt=()
[ $# -eq 3 ] && out_opt=(--out-dir "$(realpath -m "$3")")
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=path.sh
. ./path.sh
python -m k2d.score --ref "$ref" --hyp "$hyp" "${out_opt[@]}"
