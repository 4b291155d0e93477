# shellcheck shell=bash
# Logging helpers for k2d shell scripts: timestamped lines on stderr naming the calling script and line.

_k2d_log() {
  echo "$(date '+%Y-%m-%d %H:%M:%S') (${BASH_SOURCE[2]##*/}:${BASH_LINENO[1]}) $*" >&2
}

log() {
  _k2d_log "$@"
}

die() {
  _k2d_log "ERROR: $*"
  exit 1
}

# require_int NAME VALUE: fail unless VALUE is a non-negative integer.
require_int() {
  [[ "$2" =~ ^[0-9]+$ ]] || die "--$1 must be a non-negative integer, got '$2'"
}
