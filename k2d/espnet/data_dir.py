"""Write chunk cuts (e.g. stage 4's kept chunks) as a Kaldi/ESPnet data directory, one utterance per chunk
with its pseudo-label text, so any Kaldi or ESPnet recipe can train on K²D-filtered pseudo-labels.

    python -m k2d.espnet.data_dir --cuts data/mini_cs/cuts/mini_cs_cuts_train_unlabelled-k2d_composite.jsonl.gz \\
        --out-dir data/mini_cs/kaldi/train_k2d_composite

Writes wav.scp, segments, text, utt2spk and spk2utt (lhotse's Kaldi export); the speaker of a chunk is its
recording (no speaker labels exist for unlabelled audio). Afterwards run Kaldi's `utils/fix_data_dir.sh`
if your recipe expects sorted files with speaker-prefixed ids.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lhotse import CutSet, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.kaldi import export_to_kaldi

from k2d.audio import labelled_cut
from k2d.cuts import teacher_text
from k2d.utils import setup_logging

log = logging.getLogger("k2d.espnet.data_dir")


def chunk_supervisions(cuts) -> tuple[RecordingSet, SupervisionSet]:
    """One supervision per chunk (its whole span, its pseudo-label text) over the chunks' recordings."""
    recordings, supervisions = {}, []
    for cut in cuts:
        span = labelled_cut(cut)  # a continued chunk is trimmed to its last complete segment, as for training
        recordings[cut.recording_id] = cut.recording
        supervisions.append(SupervisionSegment(
            id=cut.id, recording_id=cut.recording_id, start=cut.start, duration=round(span.duration, 3), channel=0,
            text=teacher_text(cut), speaker=cut.recording_id,
        ))
    return RecordingSet.from_recordings(recordings.values()), SupervisionSet.from_segments(supervisions)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=Path, required=True, help="chunk cuts (stage 2-4 output)")
    parser.add_argument("--out-dir", type=Path, required=True, help="Kaldi data directory to write")
    args = parser.parse_args(argv)
    if not args.cuts.is_file():
        log.error("%s does not exist", args.cuts)
        return 1
    recordings, supervisions = chunk_supervisions(CutSet.from_jsonl_lazy(args.cuts))
    export_to_kaldi(recordings, supervisions, args.out_dir)
    log.info("wrote %d utterances of %d recordings to %s", len(supervisions), len(recordings), args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
