#!/usr/bin/env bash
# The K2D recipe longform_dir: the top-level stage driver (../../run.sh, stages 0-7) with --recipe longform_dir.
# Usage: egs/longform_dir/run.sh [--stage N] [--stop-stage M] [any other ./run.sh option; ./run.sh --help lists them]
exec "$(dirname "$0")/../../run.sh" --recipe longform_dir "$@"
