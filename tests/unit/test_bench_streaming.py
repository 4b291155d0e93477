"""The streaming training benchmark's row syntax, by hand."""

import pytest

from k2d.bench.streaming import parse_row


def test_a_row_splits_its_options_between_the_encoder_and_the_model():
    assert parse_row("base") == ("base", {}, {})
    name, encoder, model = parse_row("narrow:subsampling_channels=32,head=ctc,kd_weight=0.01,chunk_size=16")
    assert name == "narrow"
    assert encoder == {"subsampling_channels": 32, "chunk_size": 16}  # ChunkedEncoder's options
    assert model == {"head": "ctc", "kd_weight": 0.01}  # the rest is model_conf, values read as YAML
    with pytest.raises(ValueError, match="'head' is not KEY=VALUE"):
        parse_row("x:head")
