"""The latency table of egs/mini_cs_streaming (seed 003): one row per model and decoding, from the
latency.yaml k2d.streaming.stream writes beside each decoding's scores.

    python -m k2d.streaming.latency --exp-dir exp/mini_cs_streaming
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from k2d.provenance import made_by


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    print(latency_table(args.exp_dir), end="")
    print(f"\n{made_by()}")  # the last table of RESULTS.md: the commit, versions and machine that made it
    return 0


if __name__ == "__main__":
    sys.exit(main())
