"""NTUML2021 (ky552/ML2021_ASR_ST): lecture speech of NTU's 2021 Machine Learning course, Mandarin with
English terms, MIT licence; splits train / dev / test. The K²D paper concatenated test utterances up to
30 s for long-form decoding; this recipe does the same per lecture.

Schema (dataset card): audio (16 kHz), transcription, translation, file. The lecture (session) is the file
name without its trailing utterance number (e.g. `lecture03_0012.wav` -> `lecture03`).
"""

from __future__ import annotations

import re
from pathlib import Path

from k2d.recipes import Preparer
from k2d.recipes.public import CorpusSpec, PublicCorpusConfig, expected_public_outputs, prepare_public_corpus


def lecture_of(file_name: str) -> str:
    """`lecture03_0012.wav` -> `lecture03`; a name with no trailing number is its own session."""
    stem = Path(file_name).stem
    return re.sub(r"[-_.]?\d+$", "", stem) or stem


SPEC = CorpusSpec(
    name="ntuml2021", hub_id="ky552/ML2021_ASR_ST", audio_column="audio", text_column="transcription",
    file_column="file", session_from_file=lecture_of,
)
Ntuml2021Config = PublicCorpusConfig


def prepare_ntuml2021(data_dir: Path, config: PublicCorpusConfig, nj: int = 1) -> dict:
    return prepare_public_corpus(SPEC, data_dir, config)


def expected_outputs(data_dir: Path, config: PublicCorpusConfig) -> list[Path]:
    return expected_public_outputs(SPEC, data_dir, config)


PREPARER = Preparer(SPEC.name, PublicCorpusConfig, prepare_ntuml2021, expected_outputs)
