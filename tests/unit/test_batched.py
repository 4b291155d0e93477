"""Stage 1's batched mode: speech regions to windows (by hand), and the windows of a synthesized file whose
speech spans are known (real Silero VAD, read in blocks)."""

import numpy as np
import pytest
import soundfile as sf
from lhotse import Recording

from k2d.inference.batched import recording_speech_spans, speech_windows
from k2d.recipes.mini_cs.corpus import TRAIN_SPEAKERS
from k2d.recipes.mini_cs.synth import synthesize

RATE = 16000


def test_consecutive_spans_share_a_window_while_it_fits():
    spans = [(0.2, 3.1), (4.0, 8.5), (12.0, 15.0), (15.5, 19.0), (19.5, 25.0)]
    # 0.2-8.5 fits 10 s; 12.0-19.0 fits, adding 19.5-25.0 would make 13 s: a new window
    assert speech_windows(spans, 10.0) == [(0.2, 8.5), (12.0, 19.0), (19.5, 25.0)]


def test_a_long_span_is_cut_into_equal_pieces_and_the_last_may_take_the_next_span():
    # 12.0-30.0 is 18 s: two pieces of 9 s; 30.5-31.0 fits with the second (21.0-31.0 is 10 s)
    assert speech_windows([(12.0, 30.0), (30.5, 31.0)], 10.0) == [(12.0, 21.0), (21.0, 31.0)]
    assert speech_windows([(0.0, 30.0)], 10.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]


def test_overlapping_touching_unsorted_and_empty_spans():
    assert speech_windows([(5.0, 6.0), (1.0, 3.0), (2.5, 4.0), (4.0, 4.5), (7.0, 7.0)], 30.0) == [(1.0, 6.0)]
    assert speech_windows([], 10.0) == []


def covered_once(windows, spans):
    """Every point of every span lies in exactly one window (windows sorted and disjoint, spans inside)."""
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(windows, windows[1:], strict=False))
    return all(sum(max(0.0, min(e, end) - max(s, start)) for start, end in windows) == pytest.approx(e - s)
               for s, e in spans)


@pytest.fixture(scope="module")
def known_file(tmp_path_factory):
    """Three sentences at known times, 2 s of silence around each, written to a wav file."""
    pieces, truth, t = [], [], 0.0
    for i, text in enumerate(["我们今天来讲 gradient descent", "the learning rate matters", "这个模型的准确率很高"]):
        speech = synthesize(text, TRAIN_SPEAKERS[i])
        pieces += [np.zeros(2 * RATE, np.float32), speech]
        truth.append((t + 2.0, t + 2.0 + speech.size / RATE))
        t += 2.0 + speech.size / RATE
    pieces.append(np.zeros(2 * RATE, np.float32))
    path = tmp_path_factory.mktemp("batched") / "known.wav"
    sf.write(path, np.concatenate(pieces), RATE)
    return Recording.from_file(path), truth


def test_windows_cover_the_known_speech_exactly_once(known_file):
    recording, truth = known_file
    window = 4.0  # shorter than two sentences together, so each sentence is its own window or is cut
    for block in (600.0, truth[1][0] + 1.0):  # the second: the detector's block boundary cuts sentence 2
        spans = recording_speech_spans(recording, window, block=block)
        windows = speech_windows(spans, window)
        assert all(end - start <= window + 1e-6 for start, end in windows)
        assert covered_once(windows, truth)
        # no window is mostly silence: each overlaps a sentence
        assert all(any(min(end, e) > max(start, s) for s, e in truth) for start, end in windows)
