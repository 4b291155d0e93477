"""mini_cs synthesis and corpus rendering: durations, determinism, structure."""

import numpy as np
import pytest

from k2d.audio import SAMPLE_RATE
from k2d.recipes.mini_cs.audio import mix_at_snr, rms, tones
from k2d.recipes.mini_cs.corpus import TRAIN_SPEAKERS, LongFormStyle, render_longform, render_utterance
from k2d.recipes.mini_cs.synth import Speaker, synthesize, trim_silence


def test_trim_silence_by_hand():
    samples = np.array([0, 0, 0.5, 0.2, 0, 0.3, 0, 0], dtype=np.float32)
    assert trim_silence(samples, threshold=0.1, margin=1).tolist() == pytest.approx([0, 0.5, 0.2, 0, 0.3, 0])
    assert trim_silence(np.zeros(5, np.float32)).size == 0


def test_synthesis_rate_and_speaking_speed():
    slow = Speaker("s", "cmn-latn-pinyin", "en-us", 120, 50)
    fast = Speaker("f", "cmn-latn-pinyin", "en-us", 240, 50)
    text = "我们用 gradient descent 训练模型"
    slow_audio, fast_audio = synthesize(text, slow), synthesize(text, fast)
    assert slow_audio.dtype == np.float32
    # 10 syllables and 4 English syllables: between 1 and 6 seconds at either speed
    assert 1.0 < fast_audio.size / SAMPLE_RATE < slow_audio.size / SAMPLE_RATE < 6.0
    # twice the words per minute is clearly shorter (espeak keeps some fixed pauses, so not exactly half)
    assert fast_audio.size < 0.75 * slow_audio.size


def test_mix_at_snr():
    rng = np.random.default_rng(0)
    speech, noise = rng.standard_normal(16000), rng.standard_normal(16000) * 3
    mixed = mix_at_snr(speech, noise, 10.0)
    added = mixed - speech
    assert 20 * np.log10(rms(speech) / rms(added)) == pytest.approx(10.0, abs=1e-3)
    assert np.max(np.abs(tones(rng, 16000, 0.3))) == pytest.approx(0.3)


def test_utterance_is_deterministic():
    a = render_utterance(5, "train_labelled", 3, TRAIN_SPEAKERS)
    b = render_utterance(5, "train_labelled", 3, TRAIN_SPEAKERS)
    c = render_utterance(5, "train_labelled", 4, TRAIN_SPEAKERS)
    assert np.array_equal(a.audio, b.audio) and a.segments == b.segments
    assert a.segments[0].text != c.segments[0].text
    seg = a.segments[0]
    assert 0.1 <= seg.start <= 0.3 and seg.end <= a.audio.size / SAMPLE_RATE


def test_longform_structure():
    style = LongFormStyle(hard_stretch_prob=1.0, overlap_noise_prob=0.5)
    item = render_longform(1, "train_unlabelled", 0, TRAIN_SPEAKERS, minutes=0.5, style=style)
    duration = item.audio.size / SAMPLE_RATE
    assert 30.0 <= duration < 60.0
    starts = [s.start for s in item.segments]
    assert starts == sorted(starts)
    for before, after in zip(item.segments, item.segments[1:], strict=False):
        assert before.end + 0.3 <= after.start  # at least the shortest pause between sentences
    assert sum(item.hard_stretches.get(k, 0) for k in ("silence", "noise", "tones")) == len(item.segments)
    assert item.nonspeech_seconds == pytest.approx(duration - sum(s.end - s.start for s in item.segments))
    assert np.max(np.abs(item.audio)) <= 1.0
