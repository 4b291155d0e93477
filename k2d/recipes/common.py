"""Helpers shared by the real-corpus recipes: reading local copies (parquet / Arrow / CSV / TSV), writing
audio, probing files, the long-form test condition, and reference clean-up."""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import AudioSource, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.qa import fix_manifests, validate_recordings_and_supervisions

from k2d.audio import SAMPLE_RATE
from k2d.layout import manifest_path
from k2d.utils import atomic_path

log = logging.getLogger(__name__)


class CorpusMissing(RuntimeError):
    """The corpus is not where the recipe looks; the message says what to download and where to put it."""


def missing_corpus_message(name: str, corpus_dir: Path, hub_id: str | None, expected: str, extra: str = "") -> str:
    lines = [f"{name}: no local copy found in {corpus_dir}.", f"Expected: {expected}."]
    if hub_id:
        lines.append(
            f"Get it from the Hugging Face Hub ({hub_id}): when online, rerun stage 0 with K2D_ALLOW_DOWNLOAD=1 to "
            f"download its parquet files into {corpus_dir}, or download them yourself, e.g. "
            f"`huggingface-cli download {hub_id} --repo-type dataset --local-dir {corpus_dir}`."
        )
    if extra:
        lines.append(extra)
    return "\n".join(lines)


def download_hub_dataset(hub_id: str, corpus_dir: Path) -> None:
    """Fetch a dataset repository's files (parquet) into corpus_dir with huggingface_hub (online only)."""
    from huggingface_hub import snapshot_download

    log.info("downloading %s into %s", hub_id, corpus_dir)
    snapshot_download(repo_id=hub_id, repo_type="dataset", local_dir=str(corpus_dir))


# ---- tables ----
def table_files(corpus_dir: Path, split: str) -> list[Path]:
    """Parquet or Arrow files of one split, in the layouts the Hub and `save_to_disk` use:
    data/SPLIT-00000-of-00003.parquet, SPLIT/0000.parquet, CONFIG/SPLIT/0000.parquet, SPLIT/data-00000.arrow."""
    found = []
    for path in sorted(Path(corpus_dir).rglob("*")):
        if path.suffix not in (".parquet", ".arrow") or not path.is_file():
            continue
        rel = path.relative_to(corpus_dir)
        if split in rel.parts[:-1] or re.match(rf"{re.escape(split)}[-_.]", path.name):
            found.append(path)
    return found


def iter_table_rows(path: Path) -> Iterator[dict]:
    """Rows of a parquet file or an Arrow file written by `datasets.save_to_disk`, batch by batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        batches = pq.ParquetFile(path).iter_batches(batch_size=64)
    else:
        try:
            reader = pa.ipc.open_stream(path)
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(path)
        if hasattr(reader, "__iter__"):
            batches = reader
        else:
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
    for batch in batches:
        yield from batch.to_pylist()


def iter_delimited(path: Path, delimiter: str) -> Iterator[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        yield from csv.DictReader(f, delimiter=delimiter, quoting=quoting)


# ---- audio ----
def write_audio_bytes(audio: dict, out_stem: Path) -> Path:
    """Write a Hugging Face audio cell ({"bytes": ..., "path": ...}) to OUT_STEM + its original extension."""
    if not audio or not audio.get("bytes"):
        raise ValueError("audio cell holds no bytes")
    suffix = Path(audio.get("path") or "x.wav").suffix or ".wav"
    path = out_stem.with_suffix(suffix)
    if not path.exists():
        with atomic_path(path) as tmp:
            tmp.write_bytes(audio["bytes"])
    return path


def probe_duration(path: Path) -> tuple[float, int, int]:
    """(duration s, sampling rate, channels) from the file header: soundfile, else ffprobe."""
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate, info.samplerate, info.channels
    except Exception:  # soundfile cannot read this container; ask ffprobe
        pass
    if shutil.which("ffprobe") is None:
        raise RuntimeError("not readable by soundfile and ffprobe is not installed")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
         "stream=sample_rate,channels:format=duration", "-of", "json", str(path)],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        reason = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "unknown error"
        raise RuntimeError(f"ffprobe cannot read it: {reason}")
    data = json.loads(out.stdout or "{}")
    streams = data.get("streams") or []
    if not streams:
        raise RuntimeError("no audio stream")
    duration = float(data.get("format", {}).get("duration") or 0.0)
    return duration, int(streams[0]["sample_rate"]), int(streams[0]["channels"])


def soundfile_readable(path: Path) -> bool:
    try:
        sf.info(str(path))
        return True
    except Exception:
        return False


def transcode_to_flac(path: Path, out: Path) -> Path:
    """Decode any ffmpeg-readable audio (mp4, m4a, webm...) once to 16 kHz mono FLAC, so later stages can
    seek in it instead of decoding from the start for every window."""
    if out.exists():
        return out
    with atomic_path(out) as tmp:
        result = subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(path), "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE),
             "-c:a", "flac", "-f", "flac", str(tmp)], capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg cannot decode it: {result.stderr.strip()[-300:]}")
    return out


def file_recording(recording_id: str, path: Path) -> Recording:
    """A lhotse Recording for a file, from its header (the audio is not decoded)."""
    duration, rate, channels = probe_duration(path)
    if duration <= 0:
        raise RuntimeError("zero-length audio")
    return Recording(
        id=recording_id,
        sources=[AudioSource(type="file", channels=list(range(channels)), source=str(path))],
        sampling_rate=rate, num_samples=int(round(duration * rate)), duration=duration,
    )


def load_mono(recording: Recording) -> np.ndarray:
    if recording.sampling_rate != SAMPLE_RATE:
        recording = recording.resample(SAMPLE_RATE)
    audio = recording.load_audio()
    return (audio.mean(axis=0) if audio.ndim == 2 else audio).astype(np.float32)


# ---- long-form test condition ----
@dataclass(frozen=True)
class Utterance:
    id: str
    session: str
    duration: float


def group_for_longform(utterances: list[Utterance], max_seconds: float = 30.0) -> list[list[Utterance]]:
    """Consecutive utterances of a session joined while the group stays within max_seconds (an utterance
    longer than that forms a group of its own); order is kept."""
    groups: list[list[Utterance]] = []
    current: list[Utterance] = []
    total = 0.0
    for utt in utterances:
        if current and (utt.session != current[0].session or total + utt.duration > max_seconds):
            groups.append(current)
            current, total = [], 0.0
        current.append(utt)
        total += utt.duration
    if current:
        groups.append(current)
    return groups


def build_longform(
    recordings: RecordingSet, supervisions: SupervisionSet, session_of: dict[str, str], audio_dir: Path,
    max_seconds: float, split_name: str,
) -> tuple[RecordingSet, SupervisionSet]:
    """Concatenate utterance audio by session (in manifest order) into recordings of at most max_seconds;
    each keeps its utterances as supervisions at their new offsets, so references join in order."""
    by_id = {s.id: s for s in supervisions}
    utterances = [Utterance(s.id, session_of[s.id], s.duration) for s in supervisions]
    new_recordings, new_supervisions = [], []
    for n, group in enumerate(group_for_longform(utterances, max_seconds)):
        rec_id = f"{split_name}_{n:05d}_{group[0].session}"
        pieces, offset = [], 0.0
        for utt in group:
            sup = by_id[utt.id]
            audio = load_mono(recordings[sup.recording_id])
            audio = audio[int(sup.start * SAMPLE_RATE) : int(sup.end * SAMPLE_RATE)]
            pieces.append(audio)
            new_supervisions.append(SupervisionSegment(
                id=sup.id, recording_id=rec_id, start=round(offset, 4), duration=round(audio.size / SAMPLE_RATE, 4),
                channel=0, text=sup.text, language=sup.language, speaker=sup.speaker,
            ))
            offset += audio.size / SAMPLE_RATE
        path = audio_dir / f"{rec_id}.flac"
        samples = np.concatenate(pieces)
        if not path.exists():
            with atomic_path(path) as tmp:
                sf.write(tmp, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        new_recordings.append(Recording(rec_id, [AudioSource("file", [0], str(path))], SAMPLE_RATE, samples.size,
                                        samples.size / SAMPLE_RATE))
    return RecordingSet.from_recordings(new_recordings), SupervisionSet.from_segments(new_supervisions)


# ---- references ----
_MARKUP = re.compile(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)|\{[^}]*\}|#")


def clean_reference(text: str) -> str:
    """Remove annotation markup: [noise]-style tags, <unk>-style tags, (laugh)-style marks, {...}, '#'."""
    return re.sub(r"\s+", " ", _MARKUP.sub(" ", text or "")).strip()


def write_split(corpus: str, manifest_dir: Path, split: str, recordings: RecordingSet, supervisions: SupervisionSet):
    """Fix, validate and write one split's manifests under the lhotse naming."""
    recordings, supervisions = fix_manifests(recordings, supervisions)
    validate_recordings_and_supervisions(recordings, supervisions)
    for manifest, kind in ((recordings, "recordings"), (supervisions, "supervisions")):
        with atomic_path(manifest_path(manifest_dir, corpus, kind, split)) as tmp:
            manifest.to_file(tmp)
    log.info("%s %s: %d recordings, %d supervisions, %.2f h", corpus, split, len(recordings), len(supervisions),
             sum(r.duration for r in recordings) / 3600)

