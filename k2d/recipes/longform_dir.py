"""longform_dir: your own unlabelled recordings, a directory tree of audio files of any format, sample rate
and channel count.

Stage 0 writes `longform_dir_recordings_unlabelled.jsonl.gz` (ids from the path relative to the corpus
directory, so they are stable and unique; durations from file headers, without decoding). Files soundfile
cannot read (mp4, m4a, webm...) are decoded once with ffmpeg to 16 kHz mono FLAC under data/NAME/audio/, so
later stages can seek in them. Unreadable or empty files are reported by name (and in
`data/NAME/manifests/skipped_unlabelled.tsv`) and left out; the rest goes on.

Optional test sets (`test_sets: {name: path}`): a Kaldi data directory (wav.scp, text, optional segments)
or a directory of audio files with a `text` file of `<file name without extension> <transcript>` lines.
"""

from __future__ import annotations

import hashlib
import logging
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lhotse import RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.kaldi import load_kaldi_data_dir

from k2d.config import option
from k2d.kaldi_text import read_text_file
from k2d.layout import manifest_path
from k2d.recipes import Preparer
from k2d.recipes.common import (
    CorpusMissing,
    clean_reference,
    file_recording,
    soundfile_readable,
    transcode_to_flac,
    write_split,
)
from k2d.utils import atomic_path

log = logging.getLogger(__name__)
CORPUS = "longform_dir"
AUDIO_EXTENSIONS = [".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".webm", ".mkv", ".mov"]


@dataclass
class LongformDirConfig:
    corpus_dir: str = option("", "directory tree of long recordings (wav, flac, mp3, ogg/opus, m4a, mp4, webm...)")
    split: str = option("unlabelled", "split name of the recordings")
    extensions: list[str] = option(AUDIO_EXTENSIONS, "file extensions taken as audio")
    test_sets: dict = option({}, "name: path of a Kaldi data directory, or of audio files with a `text` file")


def recording_ids(paths: list[Path], root: Path) -> dict[Path, str]:
    """Stable, unique ids from the path relative to ROOT, without extension, '/' -> '__'. Letters and digits
    of any script are kept (第一课.wav -> 第一课); other characters become '_', and then, or when two files
    would share an id (a.wav and a.mp3, `a b/x.wav` and `a_b/x.wav`), a short hash of the relative path is
    added. A collision that still happens is an error naming both files."""
    def readable(path: Path) -> tuple[str, bool]:
        joined = "__".join(path.relative_to(root).with_suffix("").parts)
        safe = "".join(c if c.isalnum() or c in "_.-" else "_" for c in joined)
        return safe, safe != joined

    bases = {p: readable(p) for p in paths}
    counts: dict[str, int] = {}
    for safe, _ in bases.values():
        counts[safe] = counts.get(safe, 0) + 1
    ids: dict[Path, str] = {}
    owner: dict[str, Path] = {}
    for path, (safe, replaced) in bases.items():
        rel = path.relative_to(root).as_posix()
        recording_id = f"{safe}_{hashlib.sha1(rel.encode()).hexdigest()[:8]}" if replaced or counts[safe] > 1 else safe
        if recording_id in owner:
            raise CorpusMissing(f"{owner[recording_id]} and {path} would both be recording {recording_id}: "
                                "rename one of them")
        owner[recording_id], ids[path] = path, recording_id
    return ids


def not_audio_file(path: Path) -> str | None:
    """Why a path with an audio extension cannot be read as a file, or None for a regular file."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except FileNotFoundError:
            return "dangling symbolic link"
        except (RuntimeError, OSError):
            return "symbolic link loop"
    if path.is_dir():
        return "a directory, not an audio file"
    if not path.is_file():
        mode = path.stat().st_mode
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        return f"not a regular file ({kind})"
    return None


def scan_audio(root: Path, extensions: list[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(audio files, [(path, why it was left out)]) under ROOT with one of the extensions."""
    wanted = {e.lower() for e in extensions}
    files, skipped = [], []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in wanted:
            continue
        reason = not_audio_file(path)
        (skipped.append((path, reason)) if reason else files.append(path))
    return files, skipped


def probe(path: Path, recording_id: str, transcode_dir: Path):
    """(recording, None) or (None, reason)."""
    try:
        if path.stat().st_size == 0:
            return None, "empty file (0 bytes)"
        source = path if soundfile_readable(path) else transcode_to_flac(path, transcode_dir / f"{recording_id}.flac")
        return file_recording(recording_id, source), None
    except Exception as error:  # reported per file; one bad file never stops the stage
        return None, str(error).splitlines()[0] if str(error) else type(error).__name__


def test_set_manifests(name: str, path: Path) -> tuple[RecordingSet, SupervisionSet]:
    transcripts = read_text_file(path / "text") if (path / "text").is_file() else {}  # UTF-8, checked
    if (path / "wav.scp").is_file():
        recordings, supervisions, _ = load_kaldi_data_dir(path, sampling_rate=16000)
        if supervisions is None:
            raise CorpusMissing(f"test set {name}: {path} has no text file")
        return recordings, supervisions
    text_file = path / "text"
    if not text_file.is_file():
        raise CorpusMissing(f"test set {name}: {path} is neither a Kaldi data directory (wav.scp) nor a "
                            "directory of audio with a `text` file")
    audio = {p.stem: p for p in scan_audio(path, AUDIO_EXTENSIONS)[0]}
    missing = sorted(set(transcripts) - set(audio))
    if missing:
        raise CorpusMissing(f"test set {name}: no audio file for {len(missing)} transcript(s), e.g. {missing[0]}")
    recordings = [file_recording(key, audio[key]) for key in transcripts]
    supervisions = [
        SupervisionSegment(id=r.id, recording_id=r.id, start=0.0, duration=r.duration, channel=0,
                           text=clean_reference(transcripts[r.id]))
        for r in recordings
    ]
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)


def expected_outputs(data_dir: Path, config: LongformDirConfig) -> list[Path]:
    manifests = Path(data_dir) / "manifests"
    outputs = [manifest_path(manifests, CORPUS, "recordings", config.split)]
    for name in config.test_sets:
        outputs += [manifest_path(manifests, CORPUS, kind, name) for kind in ("recordings", "supervisions")]
    return outputs


def prepare_longform_dir(data_dir: Path, config: LongformDirConfig, nj: int = 1) -> dict:
    root = Path(config.corpus_dir) if config.corpus_dir else None
    if root is None or not root.is_dir():
        raise CorpusMissing(
            f"longform_dir: corpus directory {config.corpus_dir or '(unset)'} does not exist; give the directory "
            "of your recordings with --corpus-dir DIR (or corpus_dir in egs/longform_dir/conf/prepare.yaml)"
        )
    data_dir = Path(data_dir)
    paths, not_files = scan_audio(root, config.extensions)
    if not paths:
        raise CorpusMissing(f"longform_dir: no audio files ({', '.join(config.extensions)}) under {root}")
    ids = recording_ids(paths, root)
    transcode_dir = data_dir / "audio"
    with ThreadPoolExecutor(max(1, nj)) as pool:  # probing waits on files and ffmpeg, not on Python
        results = list(pool.map(lambda p: probe(p, ids[p], transcode_dir), paths))
    recordings = [rec for rec, _ in results if rec is not None]
    skipped = not_files + [(path, reason) for path, (rec, reason) in zip(paths, results, strict=True) if rec is None]
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    if not recordings:
        raise CorpusMissing(f"longform_dir: none of the {len(paths)} audio files under {root} is readable")
    manifests = data_dir / "manifests"
    with atomic_path(manifests / f"skipped_{config.split}.tsv") as tmp:
        tmp.write_text("".join(f"{p}\t{r}\n" for p, r in skipped), encoding="utf-8")
    with atomic_path(manifest_path(manifests, CORPUS, "recordings", config.split)) as tmp:
        RecordingSet.from_recordings(recordings).to_file(tmp)
    hours = sum(r.duration for r in recordings) / 3600
    log.info("longform_dir: %d recordings (%.2f h) from %s; %d file(s) skipped",
             len(recordings), hours, root, len(skipped))
    for name, path in config.test_sets.items():
        test_recordings, test_supervisions = test_set_manifests(name, Path(path))
        write_split(CORPUS, manifests, name, test_recordings, test_supervisions)
    return {"recordings": len(recordings), "hours": hours, "skipped": [str(p) for p, _ in skipped]}


PREPARER = Preparer(CORPUS, LongformDirConfig, prepare_longform_dir, expected_outputs)
