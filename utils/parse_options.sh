# shellcheck shell=bash
# Option parsing for k2d scripts (source it after declaring every option as a variable with its default).
#
#   stage=0            # declared first: the variable's existence makes --stage a valid option
#   help_message="Usage: $0 [options]"
#   . utils/parse_options.sh
#
# Accepts --name value and --name=value; dashes in names map to underscores (--stop-stage -> stop_stage).
# Only the script's own options are accepted: lower-case variables set before sourcing this file, not
# exported to the environment (so --PATH or --home cannot change the shell's own variables) and not
# help_message.
# A variable whose default is true or false is a flag: --force alone sets it to true, and any given value
# must be true or false. --help prints $help_message and exits 0; an unknown option or a missing value
# prints an error and the usage, and exits 1. Positional arguments are left in "$@".

_k2d_usage_error() {
  echo "$0: $1" >&2
  [ -n "${help_message:-}" ] && echo "$help_message" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      echo "${help_message:-Usage: $0 [options]}"
      exit 0
      ;;
    --)
      shift
      break
      ;;
    --*)
      _k2d_opt="${1#--}"
      _k2d_has_value=false
      if [[ "$_k2d_opt" == *=* ]]; then
        _k2d_value="${_k2d_opt#*=}"
        _k2d_opt="${_k2d_opt%%=*}"
        _k2d_has_value=true
      fi
      _k2d_name="${_k2d_opt//-/_}"
      _k2d_flags=$(declare -p "$_k2d_name" 2>/dev/null)  # "declare -x NAME=..." for an exported one
      _k2d_flags=${_k2d_flags#declare -}
      _k2d_flags=${_k2d_flags%% *}
      if ! [[ "$_k2d_name" =~ ^[a-z][a-z0-9_]*$ ]] || [ -z "${!_k2d_name+set}" ] \
          || [ "$_k2d_name" = help_message ] || [[ "$_k2d_flags" == *x* ]]; then
        _k2d_usage_error "unknown option --$_k2d_opt"
      fi
      _k2d_current="${!_k2d_name}"
      if [ "$_k2d_has_value" = false ]; then
        if [ "$_k2d_current" = true ] || [ "$_k2d_current" = false ]; then
          if [ $# -ge 2 ] && { [ "$2" = true ] || [ "$2" = false ]; }; then
            _k2d_value="$2"
            shift
          else
            _k2d_value=true
          fi
        else
          [ $# -ge 2 ] || _k2d_usage_error "option --$_k2d_opt needs a value"
          _k2d_value="$2"
          shift
        fi
      fi
      if { [ "$_k2d_current" = true ] || [ "$_k2d_current" = false ]; } \
          && [ "$_k2d_value" != true ] && [ "$_k2d_value" != false ]; then
        _k2d_usage_error "option --$_k2d_opt takes true or false, not '$_k2d_value'"
      fi
      printf -v "$_k2d_name" '%s' "$_k2d_value"
      shift
      ;;
    *)
      break
      ;;
  esac
done
unset _k2d_opt _k2d_has_value _k2d_value _k2d_name _k2d_current _k2d_flags
