# shellcheck shell=bash
# The shared driver of the ESPnet recipes (seed 002: egs/mini_cs_mtkd, seed 003: egs/mini_cs_streaming), as
# ESPnet's recipes share asr.sh. A recipe's run.sh sets `recipe`, `stop_stage` (its last stage),
# `help_message` and its own options, cds to the repository root and sources this file, which
#   - adds the common options (--work-dir --device --stage --stop-stage --conf-dir --cmd) and parses them;
#   - checks the recipe's configs before any stage runs (k2d.check_config --espnet);
#   - reads every path from k2d/layout.py (EspnetLayout) into L[key];
#   - gives run_stage N, espnet_train NAME OUT MODULE ARGS... (one ESPnet training run: on this machine, or a
#     Slurm job with conf/cmd.yaml's train resources; it resumes a stopped run and skips a finished one) and
#     the stages every such recipe shares: prepare_corpus (stage 0) and prepare_data (stage 1).
# set by the recipe's run.sh before it sources this file
: "${recipe:?}" "${stop_stage:?}" "${caller:?}"
work_dir=.
device=auto           # cpu, cuda, cuda:N, or auto (cuda when available)
stage=0
conf_dir=""           # default: egs/RECIPE/conf
cmd=local             # local (this machine) or slurm (conf/cmd.yaml's resources)

# shellcheck source=utils/parse_options.sh
. utils/parse_options.sh
# shellcheck source=utils/log.sh
. utils/log.sh
set -euo pipefail
[ $# -eq 0 ] || die "unexpected argument '$1' (see --help)"
[[ -z "$work_dir" || "$work_dir" = /* ]] || work_dir="$caller/$work_dir"
[[ -z "$conf_dir" || "$conf_dir" = /* ]] || conf_dir="$caller/$conf_dir"
require_int stage "$stage"
require_int stop-stage "$stop_stage"
[ "$stage" -le "$stop_stage" ] || die "--stage $stage is after --stop-stage $stop_stage"
[[ "$cmd" =~ ^(local|slurm)$ ]] || die "--cmd must be local or slurm, got '$cmd'"
[[ "$device" =~ ^(auto|cpu|cuda(:[0-9]+)?)$ ]] || die "--device must be auto, cpu, cuda or cuda:N, got '$device'"
# shellcheck source=path.sh
. ./path.sh
[ -t 2 ] || export TQDM_MININTERVAL="${TQDM_MININTERVAL:-30}"

conf="${conf_dir:-egs/$recipe/conf}"
python -m k2d.check_config --recipe "$recipe" --conf-dir "$conf" --espnet || die "fix the configs in $conf (see above)"
declare -A L
while read -r key value; do L[$key]=$value; done <<< "$(python -m k2d.layout --recipe "$recipe" \
  --work-dir "$work_dir" --espnet)"
ngpu=0  # ESPnet's: one GPU when the device is (or may be) CUDA and one is there
if [ "$device" != cpu ] && python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then ngpu=1; fi
jobs=(python -m k2d.launch --backend "$cmd")
if [ "$cmd" = slurm ]; then
  [ -f "$conf/cmd.yaml" ] || die "--cmd slurm needs $conf/cmd.yaml (the jobs' resources; see egs/mini_cs/conf/cmd.yaml)"
  command -v sbatch >/dev/null || die "--cmd slurm: sbatch is not on PATH (is this a Slurm login node?)"
  jobs+=(--cmd-config "$conf/cmd.yaml")
fi

run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

# espnet_train NAME OUT MODULE ARGS...: `python -m MODULE --output_dir OUT ARGS...` (an ESPnet task) as one
# job; its output is appended to OUT/train.log. ESPnet writes valid.CRITERION.ave.pth when a run ends (its
# valid.CRITERION.best.pth already after the first epoch): a finished run is skipped, a stopped one resumes
# from its checkpoint.pth.
espnet_train() {
  local name=$1 out=$2 module=$3
  shift 3
  compgen -G "$out/valid.*.ave.pth" > /dev/null && { log "$name: $out finished: skipping"; return; }
  log "$name -> $out (log: $out/train.log)"
  mkdir -p "$out"
  # shellcheck disable=SC2016  # the inner shell expands them
  "${jobs[@]}" --kind train --log-dir "$out/log" -- bash -c 'exec "${@:2}" >> "$1" 2>&1' train "$out/train.log" \
    python -m "$module" --output_dir "$out" --ngpu "$ngpu" --resume true "$@" \
    || die "$name failed: see $out/train.log"
}

# ESPnet data options of an ASR data directory for SPLIT (train or valid): audio, text and shapes.
asr_data() {
  local split=$1 dir=$2
  echo "--${split}_data_path_and_name_and_type $dir/wav.scp,speech,sound"
  echo "--${split}_data_path_and_name_and_type $dir/text,text,text --${split}_shape_file $dir/speech_shape"
}

prepare_corpus() {
  log "Stage 0: the ${L[corpus]} corpus -> ${L[manifests]}"
  ./run.sh --recipe "${L[corpus]}" --stage 0 --stop-stage 0 --work-dir "$work_dir"
}

prepare_data() {
  log "Stage 1: cuts, ESPnet data dirs, tokens -> ${L[data]}"
  python -m k2d.espnet.recipe cuts --recipe "$recipe" --work-dir "$work_dir" --config "$conf/data.yaml"
  for set in finetune valid; do
    python -m k2d.espnet.data_dir --cuts "${L[cuts:$set]}" --out-dir "${L[espnet]}/asr_$set" --dump-audio
  done
  python -m k2d.espnet.tokens --text "${L[espnet]}/asr_finetune/text" --vocab-size 500 --out-dir "${L[tokens]}"
}
