# shellcheck shell=bash
# Logging helpers for k2d shell scripts: timestamped lines on stderr, and a fatal error.

log() {
  echo "$(date '+%Y-%m-%d %H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*" >&2
}

die() {
  log "ERROR: $*"
  exit 1
}

# require_int NAME VALUE: fail unless VALUE is a non-negative integer.
require_int() {
  [[ "$2" =~ ^[0-9]+$ ]] || die "--$1 must be a non-negative integer, got '$2'"
}
