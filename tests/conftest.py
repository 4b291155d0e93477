"""Shared fixtures: a tiny tokenizer and tiny random Whisper models built offline, and the repo root."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tokenizer():
    """A Whisper tokenizer trained on 2,000 generated mini_cs sentences (built in about a second)."""
    from k2d.models.demo import build_corpus_tokenizer
    from k2d.recipes.mini_cs.text import generate_sentence

    return build_corpus_tokenizer(generate_sentence, 2000, 600, seed=0)


@pytest.fixture(scope="session")
def tiny_whisper(tokenizer):
    """(model, processor): a randomly initialised 2+4-layer Whisper with a 10 s window."""
    import torch

    from k2d.models.demo import DemoModelSpec, build_demo_whisper

    torch.manual_seed(0)
    spec = DemoModelSpec(d_model=32, encoder_layers=2, decoder_layers=4, attention_heads=2, ffn_dim=64, dropout=0.0)
    model, processor = build_demo_whisper(spec, tokenizer)
    return model.eval(), processor


@pytest.fixture
def rng():
    return random.Random(1234)


def write_tiny_cuts(directory: Path, count: int = 8, seconds: float = 2.0) -> Path:
    """`count` short noisy recordings with one generated sentence each, as a lhotse cuts manifest."""
    import numpy as np
    import soundfile as sf
    from lhotse import CutSet, Recording, SupervisionSegment

    from k2d.recipes.mini_cs.text import generate_sentence

    directory.mkdir(parents=True, exist_ok=True)
    text_rng = random.Random(0)
    audio_rng = np.random.default_rng(0)
    cuts = []
    for i in range(count):
        path = directory / f"utt{i}.flac"
        samples = (audio_rng.standard_normal(int(16000 * seconds)) * 0.05).astype("float32")
        sf.write(path, samples, 16000)
        recording = Recording.from_file(path, recording_id=f"utt{i}")
        cut = recording.to_cut()
        cut.supervisions = [SupervisionSegment(f"utt{i}-0", f"utt{i}", 0.2, seconds - 0.4,
                                               text=generate_sentence(text_rng).text)]
        cuts.append(cut)
    path = directory / "cuts.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(path)
    return path


@pytest.fixture
def tiny_cuts(tmp_path) -> Path:
    return write_tiny_cuts(tmp_path / "tiny_cuts")


def pytest_collection_modifyitems(config, items):
    """GPU tests run where a CUDA device is present and are skipped, saying so, everywhere else."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
