"""Scoring: corpus-level MER, Mandarin CER, English WER, S/D/I counts, repetitive hallucinations.

Reference and hypothesis files are Kaldi `text` files (`<id> <transcript>` per line). Both sides are
normalised by the same code as stage 3 (k2d.text.normalize). MER counts every Chinese character and every
other word as one unit; CER aligns only the Chinese characters of both sides, WER only the other words.
A hypothesis is a repetitive hallucination when a character 6-gram occurs more than 5 times in it; the
hallucination events are counted as in the K2D paper's Table 4 (k2d.metrics.distances.loop_events).

    python -m k2d.score --ref exp/mini_cs/teacher/decode_test_in/ref.txt \\
        --hyp exp/mini_cs/teacher/decode_test_in/hyp.txt --out-dir exp/mini_cs/teacher/decode_test_in
    local/score.sh REF HYP [OUT_DIR]          # the same, as scoring scripts usually are called

Writes OUT_DIR/errs.txt (per-utterance alignment), OUT_DIR/scores.yaml and OUT_DIR/summary.txt (one line).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from k2d.metrics.scoring import score_files
from k2d.utils import setup_logging

log = logging.getLogger("k2d.score")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", type=Path, required=True, help="reference text file (<id> <text>)")
    parser.add_argument("--hyp", type=Path, required=True, help="hypothesis text file (<id> <text>)")
    parser.add_argument("--out-dir", type=Path, help="where errs.txt, scores.yaml, summary.txt go (default: HYP's dir)")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    for path in (args.ref, args.hyp):
        if not path.is_file():
            log.error("%s %s", path, "is a directory, not a Kaldi text file" if path.is_dir() else "does not exist")
            return 1
    try:
        total = score_files(args.ref, args.hyp, args.out_dir or args.hyp.parent)
    except ValueError as error:
        log.error("%s", error)
        return 1
    print(total.summary_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
