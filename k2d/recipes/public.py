"""The shared shape of the public code-switching test corpora (ASCEND, CSZS, NTUML2021, Common Voice): each
is read from a local copy (the Hub's parquet files, a `save_to_disk` directory, or the original archive
layout), written as lhotse manifests per split, plus the long-form test condition (`SPLIT_long`:
utterances concatenated by session up to 30 s, as the K²D paper did for NTUML2021).

A corpus module declares a `CorpusSpec` (columns and layout) and calls `prepare_public_corpus`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lhotse import RecordingSet, SupervisionSegment, SupervisionSet

from k2d.config import option
from k2d.layout import manifest_path
from k2d.recipes.common import (
    CorpusMissing,
    build_longform,
    clean_reference,
    download_hub_dataset,
    file_recording,
    iter_table_rows,
    missing_corpus_message,
    table_files,
    write_audio_bytes,
    write_split,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One utterance of a corpus, wherever it was read from."""

    id: str
    audio_path: Path
    text: str
    speaker: str | None = None
    session: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    hub_id: str | None
    audio_column: str  # parquet / Arrow layout
    text_column: str
    file_column: str | None  # its base name gives the utterance id
    speaker_column: str | None = None
    session_column: str | None = None
    language_column: str | None = None
    session_from_file: Callable[[str], str] | None = None  # when the corpus has no session column
    # original archive layout: split -> rows, or None when the corpus has none
    archive_rows: Callable[[Path, str], Iterator[Row] | None] | None = None
    archive_hint: str = ""
    notes: str = ""
    hub_split_names: dict[str, str] = field(default_factory=dict)  # our split -> the Hub's name


@dataclass
class PublicCorpusConfig:
    corpus_dir: str = option("", "local copy of the corpus (parquet files, save_to_disk directory, or archive)")
    splits: list[str] = option(["test"], "splits to prepare")
    longform_splits: list[str] = option(["test"], "splits that also get the long-form condition SPLIT_long")
    longform_seconds: float = option(
        30.0, "longest concatenation of utterances in the long-form condition", positive=True)


def _optional_str(value) -> str | None:
    return None if value is None else str(value)


def utterance_id(file_name: str | None, fallback: str) -> str:
    """A stable id from a file name: its base name without extension, with unsafe characters replaced."""
    base = Path(file_name).stem if file_name else fallback
    return re.sub(r"[^0-9A-Za-z_.-]", "_", base) or fallback


def table_rows(spec: CorpusSpec, files: list[Path], split: str, audio_dir: Path) -> Iterator[Row]:
    index = 0
    for path in files:
        for record in iter_table_rows(path):
            file_name = record.get(spec.file_column) if spec.file_column else None
            audio = record.get(spec.audio_column) or {}
            file_name = file_name or audio.get("path")
            uid = utterance_id(file_name, f"{spec.name}_{split}_{index:07d}")
            index += 1
            audio_path = write_audio_bytes(audio, audio_dir / uid)
            session = record.get(spec.session_column) if spec.session_column else None
            if session is None and spec.session_from_file and file_name:
                session = spec.session_from_file(file_name)
            yield Row(
                id=uid, audio_path=audio_path, text=record.get(spec.text_column) or "",
                speaker=_optional_str(record.get(spec.speaker_column)) if spec.speaker_column else None,
                session=_optional_str(session),
                language=record.get(spec.language_column) if spec.language_column else None,
            )


def locate_rows(spec: CorpusSpec, corpus_dir: Path, split: str, audio_dir: Path) -> Iterator[Row]:
    files = table_files(corpus_dir, spec.hub_split_names.get(split, split))
    if files:
        log.info("%s %s: reading %d table file(s) under %s", spec.name, split, len(files), corpus_dir)
        return table_rows(spec, files, split, audio_dir)
    rows = spec.archive_rows(corpus_dir, split) if spec.archive_rows else None
    if rows is not None:
        return rows
    raise CorpusMissing(missing_corpus_message(
        spec.name, corpus_dir, spec.hub_id,
        f"parquet/Arrow files of split '{spec.hub_split_names.get(split, split)}'"
        + (f", or {spec.archive_hint}" if spec.archive_hint else ""), spec.notes,
    ))


def manifests_from_rows(rows: Iterator[Row]) -> tuple[RecordingSet, SupervisionSet, dict[str, str], list[str]]:
    recordings, supervisions, sessions, problems = [], [], {}, []
    for row in rows:
        try:
            recording = file_recording(row.id, row.audio_path)
        except Exception as error:  # a bad file is reported by name; the others go on
            problems.append(f"{row.audio_path}: {error}")
            continue
        recordings.append(recording)
        supervisions.append(SupervisionSegment(
            id=row.id, recording_id=row.id, start=0.0, duration=recording.duration, channel=0,
            text=clean_reference(row.text), speaker=row.speaker, language=row.language,
        ))
        sessions[row.id] = row.session or "all"
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions), sessions, problems


def expected_public_outputs(spec: CorpusSpec, data_dir: Path, config: PublicCorpusConfig) -> list[Path]:
    manifests = Path(data_dir) / "manifests"
    splits = list(config.splits) + [f"{s}_long" for s in config.longform_splits if s in config.splits]
    kinds = ("recordings", "supervisions")
    return [manifest_path(manifests, spec.name, kind, split) for split in splits for kind in kinds]


def prepare_public_corpus(spec: CorpusSpec, data_dir: Path, config: PublicCorpusConfig) -> dict:
    if not config.corpus_dir:
        raise CorpusMissing(missing_corpus_message(
            spec.name, Path("<unset>"), spec.hub_id, "a corpus directory given by --corpus-dir or corpus_dir in "
            "egs/NAME/conf/prepare.yaml" + (f" ({spec.archive_hint})" if spec.archive_hint else ""), spec.notes,
        ))
    corpus_dir = Path(config.corpus_dir)
    data_dir = Path(data_dir)
    has_copy = corpus_dir.is_dir() and any(corpus_dir.iterdir())
    if not has_copy and spec.hub_id and os.environ.get("K2D_ALLOW_DOWNLOAD") == "1":
        download_hub_dataset(spec.hub_id, corpus_dir)
    stats = {}
    for split in config.splits:
        audio_dir = data_dir / "audio" / split
        audio_dir.mkdir(parents=True, exist_ok=True)
        recordings, supervisions, sessions, problems = manifests_from_rows(
            locate_rows(spec, corpus_dir, split, audio_dir)
        )
        for problem in problems:
            log.warning("%s %s: skipped %s", spec.name, split, problem)
        if len(recordings) == 0:
            raise CorpusMissing(f"{spec.name} {split}: no readable utterances in {corpus_dir}")
        write_split(spec.name, data_dir / "manifests", split, recordings, supervisions)
        stats[split] = {"utterances": len(supervisions), "hours": sum(r.duration for r in recordings) / 3600,
                        "skipped": problems}
        if split in config.longform_splits:
            long_recordings, long_supervisions = build_longform(
                recordings, supervisions, sessions, data_dir / "audio" / f"{split}_long", config.longform_seconds,
                f"{split}_long",
            )
            write_split(spec.name, data_dir / "manifests", f"{split}_long", long_recordings, long_supervisions)
            stats[f"{split}_long"] = {"recordings": len(long_recordings)}
    return stats
