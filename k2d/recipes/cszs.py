"""CSZS zh-en (ky552/cszs_zh_en): the code-switching zero-resource benchmark, Mandarin-English, MIT licence;
splits train / dev / test. Each row pairs a correct code-switched sentence with a wrong one; ASR uses the
correct side.

Schema (the dataset cards of ky552/cszs_zh_en and its sibling ky552/cszs_es_en): correct_audio,
correct_transcription, correct_file, wrong_audio, wrong_transcription, wrong_file. There is no session
column: the long-form condition joins consecutive utterances.
"""

from __future__ import annotations

from pathlib import Path

from k2d.recipes import Preparer
from k2d.recipes.public import CorpusSpec, PublicCorpusConfig, expected_public_outputs, prepare_public_corpus

SPEC = CorpusSpec(
    name="cszs", hub_id="ky552/cszs_zh_en", audio_column="correct_audio", text_column="correct_transcription",
    file_column="correct_file",
)
CszsConfig = PublicCorpusConfig


def prepare_cszs(data_dir: Path, config: PublicCorpusConfig, nj: int = 1) -> dict:
    return prepare_public_corpus(SPEC, data_dir, config)


def expected_outputs(data_dir: Path, config: PublicCorpusConfig) -> list[Path]:
    return expected_public_outputs(SPEC, data_dir, config)


PREPARER = Preparer(SPEC.name, PublicCorpusConfig, prepare_cszs, expected_outputs)
