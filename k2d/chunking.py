"""Stage 2: cut long recordings into chunks of at most `max_chunk` seconds along the teacher's timestamps.

The rule (K²D, following the authors' code): walk the segments in time order and add each to the current
chunk while the chunk, from its first segment's start, stays within `max_chunk`; otherwise close the chunk
and start the next one with that segment. When the closing segment crossed the boundary having started
more than `continued_min` seconds before it, the chunk's audio (which runs to the boundary) holds speech its
label lacks: the chunk is marked continued, and the validator hears it only to its last complete segment.
Each chunk also records its window's end (start + max_chunk), when the next segment begins before it, that
segment's start, and the pause before it (since the end of the previous segment, or the recording's start):
stage 5 can then train on the whole window as long-form decoding sees one, including windows that open where
the previous speech ended (long-form decoding resumes at the last segment's end timestamp).
A single segment longer than `max_chunk` cannot be a chunk and is dropped; empty segments are skipped.

    python -m k2d.chunking --recordings REC.jsonl.gz --segments NAME_supervisions_SPLIT-pl.jsonl.gz \\
        --output data/NAME/cuts/NAME_cuts_SPLIT-chunks.jsonl.gz --max-chunk 30
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from lhotse import CutSet, MonoCut, SupervisionSegment, SupervisionSet

from k2d import provenance
from k2d.config import add_config_arguments, option, parse_stage_args, save_config
from k2d.cuts import ChunkFields
from k2d.manifests import ManifestError, read_manifest
from k2d.models.names import resolve_model
from k2d.models.tokenizer import window_seconds
from k2d.text.script import join_texts
from k2d.utils import atomic_path, setup_logging

log = logging.getLogger("k2d.chunking")


@dataclass(frozen=True)
class TeacherSegment:
    start: float
    end: float
    text: str
    avg_logprob: float | None = None  # the teacher's confidence in the window the segment came from
    no_speech_prob: float | None = None


@dataclass
class Chunk:
    start: float  # seconds in the recording
    end: float  # end of the chunk's audio: the boundary when continued, else the last segment's end
    segments: list[TeacherSegment]  # complete segments, recording times
    continued: bool = False
    prev_text: str | None = None
    boundary: float | None = None  # start + max_chunk: where the chunk's window ends
    next_start: float | None = None  # the next segment's start, when it begins before the boundary
    pause_before: float | None = None  # seconds since the end of the previous segment (or the recording's start)

    @property
    def complete_end(self) -> float:
        """End of the last complete segment, relative to the chunk."""
        return self.segments[-1].end - self.start

    @property
    def text(self) -> str:
        return join_texts([s.text for s in self.segments])

    @property
    def teacher_logprob(self) -> float | None:
        """The teacher's mean token log-probability over the chunk's segments, weighted by their length."""
        scored = [(s.avg_logprob, s.end - s.start) for s in self.segments if s.avg_logprob is not None]
        total = sum(w for _, w in scored)
        return round(sum(v * w for v, w in scored) / total, 4) if scored and total > 0 else None

    @property
    def teacher_no_speech(self) -> float | None:
        """The largest no-speech probability of the windows the chunk's segments came from."""
        values = [s.no_speech_prob for s in self.segments if s.no_speech_prob is not None]
        return max(values) if values else None


@dataclass
class ChunkStats:
    chunks: int = 0
    continued: int = 0
    dropped_too_long: int = 0
    dropped_empty: int = 0
    dropped_seconds: float = 0.0
    hours: float = 0.0


def chunk_segments(
    segments: list[TeacherSegment], max_chunk: float = 30.0, continued_min: float = 1.0,
    stats: ChunkStats | None = None,
) -> list[Chunk]:
    """Greedy chunking of one recording's segments (pure)."""
    stats = stats if stats is not None else ChunkStats()
    chunks: list[Chunk] = []
    current: list[TeacherSegment] = []
    speech_end = 0.0  # the latest end of any segment before the current one (dropped ones included)
    pause = 0.0  # the pause before the current chunk's first segment

    def close(following: TeacherSegment | None) -> None:
        if not current:
            return
        start = current[0].start
        boundary = start + max_chunk
        crossing = following is not None and following.start < boundary
        continued = crossing and following.start < boundary - continued_min
        end = boundary if continued else current[-1].end
        prev = chunks[-1].text if chunks else None
        chunks.append(Chunk(start, end, list(current), continued, prev, boundary,
                            following.start if crossing else None, round(pause, 3)))

    for seg in sorted(segments, key=lambda s: (s.start, s.end)):
        before, speech_end = speech_end, max(speech_end, seg.end)
        if not seg.text.strip():
            stats.dropped_empty += 1
            continue
        if seg.end - seg.start > max_chunk:
            close(seg)
            current = []
            stats.dropped_too_long += 1
            stats.dropped_seconds += seg.end - seg.start
            continue
        if current and seg.end - current[0].start > max_chunk:
            close(seg)
            current = []
        if not current:
            pause = max(seg.start - before, 0.0)
        current.append(seg)
    close(None)
    stats.chunks += len(chunks)
    stats.continued += sum(c.continued for c in chunks)
    return chunks


def chunk_cut(recording, chunk: Chunk, index: int) -> MonoCut:
    """A lhotse cut of the chunk's audio whose supervisions are its complete segments, relative to the cut
    (training snaps them to the timestamp grid); its window's end and the next segment's start go with it."""
    duration = round(min(chunk.end, recording.duration) - chunk.start, 3)
    window_end = round(min(chunk.boundary, recording.duration) - chunk.start, 3) if chunk.boundary else None
    next_start = round(chunk.next_start - chunk.start, 3) if chunk.next_start is not None else None
    cut_id = f"{recording.id}-chunk{index:05d}"
    supervisions = [
        SupervisionSegment(
            id=f"{cut_id}-{n:03d}", recording_id=recording.id, start=round(seg.start - chunk.start, 3),
            duration=round(seg.end - seg.start, 3), channel=0, text=seg.text,
        )
        for n, seg in enumerate(chunk.segments)
    ]
    return MonoCut(
        id=cut_id, start=round(chunk.start, 3), duration=duration, channel=0, recording=recording,
        supervisions=supervisions,
        custom=ChunkFields(chunk.text, chunk.continued, round(chunk.complete_end, 3), chunk.prev_text,
                           teacher_logprob=chunk.teacher_logprob,
                           teacher_no_speech=chunk.teacher_no_speech, window_end=window_end,
                           next_start=next_start, pause_before=chunk.pause_before).to_custom(),
    )


@dataclass
class ChunkConfig:
    max_chunk: float = option(30.0, "longest chunk in seconds (the teacher's window: 30 for Whisper)", positive=True)
    continued_min: float = option(
        1.0, "a crossing segment begun more than this before the boundary marks the chunk continued", minimum=0)


def segments_by_recording(supervisions: SupervisionSet):
    """Group a (recording-ordered) supervision stream by recording id, lazily. A segment that starts before
    its recording is an error naming it (a chunk would start before the audio)."""
    for recording_id, group in itertools.groupby(supervisions, key=lambda s: s.recording_id):
        segments = []
        for s in group:
            if s.start < 0:
                raise RuntimeError(f"segment {s.id} of recording {recording_id} starts at {s.start} s, before the "
                                   "recording")
            segments.append(TeacherSegment(s.start, s.end, s.text or "", (s.custom or {}).get("avg_logprob"),
                                           (s.custom or {}).get("no_speech_prob")))
        yield recording_id, segments


def write_chunks(recordings_path: Path, segments_path: Path, output: Path, config: ChunkConfig) -> ChunkStats:
    """Stream segments recording by recording and write chunk cuts; the output appears only when complete."""
    # Recording records are small (their audio is never read here), so an id -> recording map is cheap.
    recordings = {r.id: r for r in read_manifest(recordings_path, "recordings")}
    stats = ChunkStats()
    with atomic_path(output) as tmp, CutSet.open_writer(tmp) as writer:
        for recording_id, segments in segments_by_recording(read_manifest(segments_path, "supervisions")):
            if recording_id not in recordings:
                raise RuntimeError(f"{segments_path} names recording {recording_id}, which is not in {recordings_path}")
            for n, chunk in enumerate(chunk_segments(segments, config.max_chunk, config.continued_min, stats)):
                cut = chunk_cut(recordings[recording_id], chunk, n)
                stats.hours += cut.duration / 3600
                writer.write(cut)
    return stats


def teacher_window(model: str) -> float:
    """A Whisper model's window in seconds, read from its config.json (no weights loaded)."""
    config = json.loads((Path(resolve_model(model)) / "config.json").read_text(encoding="utf-8"))
    return window_seconds(config["max_source_positions"])


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=Path, required=True, help="lhotse recordings manifest")
    parser.add_argument("--segments", type=Path, required=True, help="teacher segments (stage 1 output)")
    parser.add_argument("--output", type=Path, required=True, help="chunk cuts to write (.jsonl.gz)")
    parser.add_argument("--teacher", help="the teacher that made the segments: max_chunk may not exceed its window")
    parser.add_argument("--force", action="store_true", help="chunk again even if OUTPUT exists")
    add_config_arguments(parser, ChunkConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args, config = parse_stage_args(get_parser(), ChunkConfig, argv)
    inputs = {"recordings": args.recordings, "segments": args.segments, "config": config}
    if provenance.up_to_date(args.output, inputs, "stage 2", args.force):
        return 0
    for path in (args.recordings, args.segments):
        if not path.is_file():
            log.error("%s does not exist (run the earlier stages first)", path)
            return 1
    if args.teacher:
        window = teacher_window(args.teacher)
        if config.max_chunk > window + 1e-6:
            log.error("max_chunk %g s is longer than the teacher's window (%g s, %s): its timestamps cannot place "
                      "text beyond it; set max_chunk to at most %g in the chunk config", config.max_chunk, window,
                      args.teacher, window)
            return 1
    try:
        stats = write_chunks(args.recordings, args.segments, args.output, config)
    except (RuntimeError, ManifestError) as error:
        log.error("%s", error)
        return 1
    save_config(config, args.output.parent / "chunk_config.yaml")
    provenance.write_record(args.output, inputs)
    log.info(
        "stage 2: %d chunks (%.3f h, %d continued); dropped %d empty and %d over-long segment(s) (%.1f s) -> %s",
        stats.chunks, stats.hours, stats.continued,
        stats.dropped_empty, stats.dropped_too_long, stats.dropped_seconds, args.output,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
