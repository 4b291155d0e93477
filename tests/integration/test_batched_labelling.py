"""Stage 1's batched mode (k2d.inference.batched) against the sequential mode, on the demo teacher and
synthesized speech: the same segments where the windows coincide, and bad recordings named through the stage."""

import gzip
import json

import numpy as np
import pytest
import soundfile as sf
from lhotse import Recording, RecordingSet

from k2d import pseudo_label
from k2d.inference.backends import load_recognizer
from k2d.inference.batched import transcribe_batched
from k2d.inference.settings import GenerationSettings
from k2d.inference.transcribe import transcribe_longform
from k2d.recipes.mini_cs.corpus import TRAIN_SPEAKERS
from k2d.recipes.mini_cs.synth import synthesize

RATE = 16000
SENTENCES = ["我们今天来讲 gradient descent", "the learning rate matters", "这个模型的准确率很高"]


def sentences_file(path, order, window=10.0):
    """One sentence 1 s into each `window` of a 3-window file: every segment ends before a window boundary."""
    audio = np.zeros(int(3 * window * RATE), np.float32)
    for slot, i in enumerate(order):
        speech = synthesize(SENTENCES[i], TRAIN_SPEAKERS[i])
        start = int((slot * window + 1.0) * RATE)
        audio[start: start + speech.size] = speech
    sf.write(path, audio, RATE)
    return Recording.from_file(path)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    directory = tmp_path_factory.mktemp("batched")
    return [sentences_file(directory / "a.wav", [0, 1, 2]), sentences_file(directory / "b.wav", [2, 0, 1])]


def test_batched_gives_the_sequential_segments_where_the_windows_coincide(repo_root, recordings):
    recognizer = load_recognizer(repo_root / "egs/mini_cs/models/teacher")
    assert recognizer.window == 10.0
    settings = GenerationSettings(language="zh")
    sequential = {r.recording_id: r for r in transcribe_longform(recognizer, recordings, settings, batch_size=2)}
    # the premise: each sequential window closed its segments, so it decoded [0, 10), [10, 20), [20, 30)
    assert [sequential[r.id].windows for r in recordings] == [3, 3]
    thirds = lambda recording, window: [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]  # noqa: E731
    # batch 4: the windows of both recordings share batches (4 + 2)
    batched = {r.recording_id: r for r in transcribe_batched(recognizer, recordings, settings, 4, windows_of=thirds)}
    for recording in recordings:
        ours, theirs = batched[recording.id], sequential[recording.id]
        assert ours.error is None and ours.windows == 3 and ours.decoded_seconds == pytest.approx(30.0)
        assert [(round(s.start, 3), round(s.end, 3), s.text) for s in ours.segments] == \
               [(round(s.start, 3), round(s.end, 3), s.text) for s in theirs.segments]
        assert len(ours.segments) == 3 and all(s.text for s in ours.segments)


def test_stage_1_batched_labels_speech_and_names_bad_recordings(repo_root, recordings, tmp_path):
    directory = tmp_path / "audio"
    directory.mkdir()
    sf.write(directory / "silent.wav", np.zeros(RATE * 12, np.float32), RATE)
    sf.write(directory / "empty.wav", np.zeros(0, np.float32), RATE)
    with_nan = sf.read(recordings[0].sources[0].source, dtype="float32")[0]
    with_nan[5000:5100] = np.nan
    sf.write(directory / "nan.wav", with_nan, RATE, subtype="FLOAT")
    bad = [Recording.from_file(directory / name) for name in ("silent.wav", "empty.wav", "nan.wav")]
    manifest = tmp_path / "recordings.jsonl.gz"
    RecordingSet.from_recordings([*recordings, *bad]).to_file(manifest)
    output = tmp_path / "pl" / "x-pl.jsonl.gz"
    assert pseudo_label.main(["--recordings", str(manifest), "--output", str(output), "--model",
                              str(repo_root / "egs/mini_cs/models/teacher"), "--mode", "batched",
                              "--batch-size", "4"]) == 0
    with gzip.open(output, "rt", encoding="utf-8") as f:
        supervisions = [json.loads(line) for line in f]
    by_recording = {}
    for s in supervisions:
        by_recording.setdefault(s["recording_id"], []).append(s)
    assert sorted(by_recording) == ["a", "b"]
    for segments in by_recording.values():
        # one segment per sentence, each in the 10 s third of the file its sentence was put in
        assert len(segments) == 3
        assert [int(s["start"] // 10) for s in segments] == [0, 1, 2]
    report = (tmp_path / "pl" / "x-pl_report.yaml").read_text()
    for name, reason in (("silent", "no speech found"), ("empty", "empty"), ("nan", "NaN")):
        assert f"recording: {name}" in report and reason in report, (name, report)
    assert "labelled: 2" in report and "zero_length_segments: 0" in report and "out_of_order_segments: 0" in report
