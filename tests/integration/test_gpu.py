"""On a CUDA device: decoding gives the CPU's transcripts (float32), and a KD step runs under bf16 autocast.
Skipped without a GPU (tests/conftest.py)."""

import numpy as np
import pytest
import torch

from k2d.inference.backends import load_recognizer
from k2d.inference.settings import GenerationSettings
from k2d.inference.transcribe import decode_windows

pytestmark = pytest.mark.gpu


def test_gpu_decoding_matches_cpu(repo_root):
    from k2d.recipes.mini_cs.corpus import TRAIN_SPEAKERS, render_utterance

    audios = [render_utterance(7, "test_in", i, TRAIN_SPEAKERS).audio for i in range(4)]
    settings = GenerationSettings(no_speech_threshold=None)
    texts = [[r.text for r in decode_windows(load_recognizer(repo_root / "egs/mini_cs/models/teacher", device=d),
                                             audios, settings)] for d in ("cpu", "cuda")]
    assert texts[0] == texts[1] and all(texts[0])


def test_kd_step_under_bf16_autocast(tiny_whisper):
    from k2d.models.student import create_student
    from k2d.train.data import Collator, LabelOptions, make_example
    from k2d.train.labels import TimedText
    from k2d.train.model import WhisperKDModel

    teacher, processor = tiny_whisper
    model = WhisperKDModel(create_student(teacher, [0, -1]), teacher).cuda().train()
    audio = (0.1 * np.random.default_rng(0).standard_normal(32000)).astype("float32")
    example = make_example("e", audio, [TimedText(0.0, 1.5, "模型")], processor.tokenizer, LabelOptions(window=10.0), 0)
    batch = Collator(processor.feature_extractor, processor.tokenizer.eos_token_id)([example]).to(torch.device("cuda"))
    with torch.no_grad():
        reference, _, _ = model(batch=batch)  # float32 on the same device
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, _, _ = model(batch=batch)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(reference.item(), rel=0.02)  # bf16: within 2%
    gradients = [p.grad for p in model.student.model.decoder.parameters() if p.requires_grad]
    assert gradients and all(g is not None and torch.isfinite(g).all() for g in gradients)
    assert any(g.abs().sum() > 0 for g in gradients)
