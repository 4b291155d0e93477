#!/usr/bin/env bash
# The K2D recipe mini_cs: the top-level stage driver (../../run.sh, stages 0-7) with --recipe mini_cs.
# Usage: egs/mini_cs/run.sh [--stage N] [--stop-stage M] [any other ./run.sh option; ./run.sh --help lists them]
exec "$(dirname "$0")/../../run.sh" --recipe mini_cs "$@"
