"""Common Voice 16.1 zh-TW (mozilla-foundation/common_voice_16_1, config zh-TW): read Taiwanese Mandarin,
CC0; gated on the Hub (accept the terms, then download with a token). Splits train / dev / test.

Layouts: the original archive (`cv-corpus-16.1-*/zh-TW/{train,dev,test}.tsv` with `clips/*.mp3`; columns
client_id, path, sentence, up_votes, down_votes, age, gender, accents, variant, locale, segment) or the
Hub's parquet files (client_id, path, audio, sentence, ..., where the dev split is named validation).
The long-form condition joins a speaker's (client_id's) consecutive clips.
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
    tables = sorted(corpus_dir.rglob(f"{split}.tsv"))
    if not tables:
        return None
    clips = tables[0].parent / "clips"
    return (
        Row(id=utterance_id(r["path"], r["path"]), audio_path=clips / r["path"], text=r["sentence"],
            speaker=r.get("client_id"), session=r.get("client_id"), language="zh")
        for r in iter_delimited(tables[0], "\t")
    )


SPEC = CorpusSpec(
    name="cv16_zhtw", hub_id="mozilla-foundation/common_voice_16_1", audio_column="audio", text_column="sentence",
    file_column="path", speaker_column="client_id", session_column="client_id", archive_rows=archive_rows,
    archive_hint="the original archive cv-corpus-16.1-*/zh-TW/{split}.tsv with clips/",
    notes="The dataset is gated: accept its terms on the Hub and log in (huggingface-cli login) before downloading; "
    "download only the zh-TW files (e.g. --include '*zh-TW*').",
    hub_split_names={"dev": "validation"},
)


@dataclass
class Cv16ZhtwConfig(PublicCorpusConfig):
    splits: list[str] = option(["test"], "splits to prepare (train, dev, test)")


def prepare_cv16_zhtw(data_dir: Path, config: Cv16ZhtwConfig, nj: int = 1) -> dict:
    return prepare_public_corpus(SPEC, data_dir, config)


def expected_outputs(data_dir: Path, config: Cv16ZhtwConfig) -> list[Path]:
    return expected_public_outputs(SPEC, data_dir, config)


PREPARER = Preparer(SPEC.name, Cv16ZhtwConfig, prepare_cv16_zhtw, expected_outputs)
