"""The latency and deployment tables of egs/mini_cs_streaming (seed 003), from the latency.yaml and scores
that k2d.streaming.stream and k2d.streaming.sherpa write beside each decoding:
- latency: one row per model and decoding;
- deployment (`--deployment SYSTEMS --test-sets SETS`): per student, exported head and test set, k2d's
  decoding beside sherpa-onnx's of the export, float32 and int8 (DEPLOYED: the decode_SET_<suffix> of each):
  MER, how many utterances have k2d's text, model size, real-time factor.

    python -m k2d.streaming.latency --exp-dir exp/mini_cs_streaming
    python -m k2d.streaming.latency --exp-dir exp/mini_cs_streaming --deployment alone,token --test-sets test_in
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import yaml

from k2d.kaldi_text import read_text_file
from k2d.provenance import made_by

# head -> decode_SET_<suffix> of k2d, sherpa-onnx float32, sherpa-onnx int8 (k2d.streaming.onnx --head)
DEPLOYED = {"CTC": ("ctc", "sherpa", "sherpa_int8"),
            "transducer": ("max1", "sherpa_rnnt", "sherpa_rnnt_int8")}  # max1: one token per frame, as sherpa-onnx


def latency_table(exp_dir: Path) -> str:
    lines = ["| model | decoding | chunk | compute per chunk (mean / max) | RTF | first token after its audio |",
             "|---|---|---|---|---|---|"]
    for path in sorted(Path(exp_dir).glob("asr_*/decode_*/latency.yaml")):
        info = yaml.safe_load(path.read_text())
        chunk = "full utterance" if not info["chunk_ms"] else f"{info['chunk_ms']:g} ms"
        delay = info.get("first_token_delay_ms_mean")
        lines.append(f"| {path.parent.parent.name.removeprefix('asr_')} | {path.parent.name.removeprefix('decode_')} "
                     f"| {chunk} | {info['compute_ms_per_chunk_mean']:.1f} / {info['compute_ms_per_chunk_max']:.1f} "
                     f"ms | {info['rtf']:.3f} | {'-' if delay is None else f'{delay:.0f} ms'} |")
    return "\n".join(lines) + "\n"


def deployment_table(exp_dir: Path, systems: list[str], test_sets: list[str]) -> str:
    lines = ["| model | head | test set | k2d MER % | sherpa-onnx MER % | k2d's text | sherpa-onnx int8 MER % "
             "| model MB (float32 / int8) | RTF (k2d / sherpa-onnx / int8) |", "|---|---|---|---|---|---|---|---|---|"]
    for system, (head, suffixes), test_set in itertools.product(systems, DEPLOYED.items(), test_sets):
        dirs = [Path(exp_dir) / f"asr_{system}" / f"decode_{test_set}_{suffix}" for suffix in suffixes]
        if all((d / "scores.yaml").is_file() for d in dirs):
            mer = [100 * yaml.safe_load((d / "scores.yaml").read_text())["mer"]["rate"] for d in dirs]
            latency = [yaml.safe_load((d / "latency.yaml").read_text()) for d in dirs]
            ours, theirs = read_text_file(dirs[0] / "hyp.txt"), read_text_file(dirs[1] / "hyp.txt")
            same = sum(theirs.get(key) == text for key, text in ours.items())
            lines.append(f"| {system} | {head} | {test_set} | {mer[0]:.2f} | {mer[1]:.2f} | {same} of {len(ours)} | "
                         f"{mer[2]:.2f} | {latency[1]['model_mb']:.1f} / {latency[2]['model_mb']:.1f} | "
                         + " / ".join(f"{info['rtf']:.3f}" for info in latency) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", type=Path, required=True)
    parser.add_argument("--deployment", help="the deployment table of these students (comma-separated) instead")
    parser.add_argument("--test-sets", default="test_in,test_ood", help="with --deployment (comma-separated)")
    args = parser.parse_args(argv)
    if args.deployment:
        print(deployment_table(args.exp_dir, args.deployment.split(","), args.test_sets.split(",")), end="")
        return 0
    print(latency_table(args.exp_dir), end="")
    print(f"\n{made_by()}")  # the last table of RESULTS.md: the commit, versions and machine that made it
    return 0


if __name__ == "__main__":
    sys.exit(main())
