"""Shared fixtures: a tiny tokenizer and tiny random Whisper models built offline, and the repo root."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.helpers import write_tiny_cuts  # light: no torch or transformers at import

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
