"""Voice activity detection (Silero, from faster-whisper's wheel) on a synthesized file whose speech spans are
known: three sentences separated by silence, a 440 Hz tone and brown noise."""

import numpy as np
import pytest

from k2d.inference.transcribe import leading_non_speech
from k2d.inference.vad import speech_spans
from k2d.recipes.mini_cs.audio import brown_noise
from k2d.recipes.mini_cs.corpus import TRAIN_SPEAKERS
from k2d.recipes.mini_cs.synth import synthesize

RATE = 16000


@pytest.fixture(scope="module")
def known():
    rng = np.random.default_rng(0)
    pieces, truth, t = [np.zeros(2 * RATE, np.float32)], [], 2.0
    gaps = [np.zeros(2 * RATE, np.float32), (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * RATE) / RATE)),
            brown_noise(rng, 3 * RATE, 0.05)]
    for i, (text, gap) in enumerate(zip(["我们今天来讲 gradient descent", "the learning rate matters",
                                         "这个模型的准确率很高"], gaps, strict=True)):
        speech = synthesize(text, TRAIN_SPEAKERS[i])
        truth.append((t, t + speech.size / RATE))
        pieces += [speech, gap.astype(np.float32)]
        t += (speech.size + gap.size) / RATE
    return np.concatenate(pieces), truth


def test_speech_spans_match_the_sentences_not_the_tone_or_noise(known):
    audio, truth = known
    found = speech_spans(audio)
    assert len(found) == len(truth)  # one span per sentence; the tone and the noise are not speech
    for (start, end), (true_start, true_end) in zip(found, truth, strict=True):
        assert abs(start - true_start) < 0.5 and abs(end - true_end) < 0.5  # 0.2 s of padding, and the lag


def test_a_window_starts_at_its_speech(known):
    audio, truth = known
    window = audio[int(5.5 * RATE): int(15.5 * RATE)]  # silence, then the second sentence at 1.34 s
    assert leading_non_speech(window) == pytest.approx(truth[1][0] - 5.5 - 0.2, abs=0.3)  # less the padding
    assert leading_non_speech(audio[: RATE]) == 1.0  # no speech: the whole second
    assert leading_non_speech(audio[int(2.0 * RATE): int(4.0 * RATE)]) == 0.0  # speech at once: decode as is
