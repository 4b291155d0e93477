"""The validator (stage 3) and held-out validation (stage 5) hear exactly the audio a chunk's label covers:
a continued chunk is cut at the end of its last complete segment."""

import argparse

import numpy as np
import soundfile as sf
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

from k2d import distill, validate
from k2d.inference.transcribe import decode_windows
from k2d.models.whisper import save_model_dir


def chunk_manifest(tmp_path):
    sf.write(tmp_path / "r.wav", (0.1 * np.random.default_rng(0).standard_normal(16000 * 12)).astype("float32"), 16000)
    recording = Recording.from_file(tmp_path / "r.wav", recording_id="r")
    cuts = [
        MonoCut("r-chunk00000", 0.0, 5.0, 0, recording=recording,
                supervisions=[SupervisionSegment("a", "r", 0.5, 4.0, text="模型")],
                custom={"text": "模型", "continued": False, "complete_end": 4.5, "prev_text": None}),
        MonoCut("r-chunk00001", 5.0, 7.0, 0, recording=recording,
                supervisions=[SupervisionSegment("b", "r", 0.0, 2.0, text="资料")],
                custom={"text": "资料", "continued": True, "complete_end": 2.0, "prev_text": "模型"}),
    ]
    path = tmp_path / "chunks.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(path)
    return path


def test_validator_hears_the_labelled_audio(tmp_path, tiny_whisper, monkeypatch):
    save_model_dir(*tiny_whisper, tmp_path / "model")
    heard = []

    def listening(recognizer, audios, settings, prompts=None):
        heard.extend(a.size / 16000 for a in audios)
        return decode_windows(recognizer, audios, settings, prompts)

    monkeypatch.setattr(validate, "decode_windows", listening)
    chunks = chunk_manifest(tmp_path)
    assert validate.main(["--cuts", str(chunks), "--model", str(tmp_path / "model"), "--output",
                          str(tmp_path / "validated.jsonl.gz"), "--max-new-tokens", "8"]) == 0
    assert heard == [5.0, 2.0]  # the whole first chunk; the continued one up to its complete end


def test_held_out_validation_hears_the_labelled_audio(tmp_path):
    chunks = chunk_manifest(tmp_path)
    args = argparse.Namespace(valid_cuts=None, train_cuts=chunks)
    config = distill.DistillConfig(valid_percent=100.0)  # every chunk held out
    items = distill.validation_items(args, config)
    assert [(a.size / 16000, text) for a, text in items] == [(5.0, "模型"), (2.0, "资料")]
