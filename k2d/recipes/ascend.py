"""ASCEND (CAiRE/ASCEND): 10.6 h of spontaneous Mandarin-English code-switched conversation recorded in Hong
Kong, CC-BY-SA-4.0; splits train / validation / test.

Schema (dataset card): id, path, audio, transcription, duration, language (zh / en / mixed),
original_speaker_id, session_id, topic. The original archive layout is `{split}_metadata.csv` (file_name,
transcription, duration, language, original_speaker_id, session_id, topic) beside `waves/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from k2d.config import option
from k2d.recipes import Preparer
from k2d.recipes.common import iter_delimited
from k2d.recipes.public import (
    CorpusSpec,
    PublicCorpusConfig,
    Row,
    expected_public_outputs,
    prepare_public_corpus,
    utterance_id,
)


def archive_rows(corpus_dir: Path, split: str):
    metadata = corpus_dir / f"{split}_metadata.csv"
    if not metadata.is_file():
        return None
    return (
        Row(
            id=utterance_id(r["file_name"], r["file_name"]), audio_path=corpus_dir / r["file_name"],
            text=r["transcription"], speaker=r.get("original_speaker_id"), session=r.get("session_id"),
            language=r.get("language"),
        )
        for r in iter_delimited(metadata, ",")
    )


SPEC = CorpusSpec(
    name="ascend", hub_id="CAiRE/ASCEND", audio_column="audio", text_column="transcription", file_column="path",
    speaker_column="original_speaker_id", session_column="session_id", language_column="language",
    archive_rows=archive_rows, archive_hint="{split}_metadata.csv with waves/ (the original release)",
)


@dataclass
class AscendConfig(PublicCorpusConfig):
    splits: list[str] = option(["validation", "test"], "splits to prepare (train, validation, test)")


def prepare_ascend(data_dir: Path, config: AscendConfig, nj: int = 1) -> dict:
    return prepare_public_corpus(SPEC, data_dir, config)


def expected_outputs(data_dir: Path, config: AscendConfig) -> list[Path]:
    return expected_public_outputs(SPEC, data_dir, config)


PREPARER = Preparer(SPEC.name, AscendConfig, prepare_ascend, expected_outputs)
