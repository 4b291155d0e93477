"""Kaldi/ESPnet data directories of chunk cuts, and their check."""

import soundfile as sf
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

from k2d.espnet import data_dir
from k2d.train.labels import TimedText


def chunks(tiny_cuts, tmp_path):
    recording = next(iter(CutSet.from_file(tiny_cuts))).recording
    assert isinstance(recording, Recording)
    cuts = [
        MonoCut("rec-chunk0", 0.0, 1.0, 0, recording=recording, supervisions=[
            SupervisionSegment("s0", recording.id, 0.1, 0.8, text="你好")],
            custom={"text": "你好", "continued": False, "complete_end": 0.9}),
        MonoCut("rec-chunk1", 1.0, 1.0, 0, recording=recording, supervisions=[
            SupervisionSegment("s1", recording.id, 0.02, 0.48, text="world")],
            custom={"text": "world", "continued": True, "complete_end": 0.5, "prev_text": "你好"}),
    ]
    CutSet.from_cuts(cuts).to_file(tmp_path / "cuts.jsonl.gz")
    return recording, tmp_path / "cuts.jsonl.gz"


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_chunks_become_kaldi_utterances(tiny_cuts, tmp_path):
    recording, cuts = chunks(tiny_cuts, tmp_path)
    out = tmp_path / "kaldi"
    assert data_dir.main(["--cuts", str(cuts), "--out-dir", str(out)]) == 0
    assert lines(out / "text") == ["rec-chunk0 你好", "rec-chunk1 world"]
    # the continued chunk is trimmed to its last complete segment: 1.0 + 0.5
    assert [[float(x) for x in line.split()[2:]] for line in lines(out / "segments")] == [[0.0, 1.0], [1.0, 1.5]]
    assert lines(out / "wav.scp")[0].startswith(recording.id)
    assert lines(out / "text_ts") == ["rec-chunk0 <|0.10|>你好<|0.90|>", "rec-chunk1 <|0.02|>world<|0.50|>"]
    assert lines(out / "prompt") == ["rec-chunk0", "rec-chunk1 你好"]
    assert data_dir.check_data_dir(out) == []


def test_dumped_audio_form_for_espnet(tiny_cuts, tmp_path):
    _, cuts = chunks(tiny_cuts, tmp_path)
    out = tmp_path / "espnet"
    assert data_dir.main(["--cuts", str(cuts), "--out-dir", str(out), "--dump-audio"]) == 0
    assert not (out / "segments").exists()
    durations = [sf.info(line.split(" ", 1)[1]).duration for line in lines(out / "wav.scp")]
    assert durations == [1.0, 0.5]  # the labelled spans
    assert data_dir.check_data_dir(out) == []


def test_the_check_finds_broken_directories(tiny_cuts, tmp_path):
    _, cuts = chunks(tiny_cuts, tmp_path)
    out = tmp_path / "kaldi"
    data_dir.main(["--cuts", str(cuts), "--out-dir", str(out)])
    (out / "utt2spk").write_text("rec-chunk1 x\nrec-chunk0 x\n")
    problems = data_dir.check_data_dir(out)
    assert any("not sorted" in p for p in problems)
    (out / "text").write_text("rec-chunk0 你好\n")
    assert any("list different utterances" in p for p in data_dir.check_data_dir(out))


def test_timestamped_text_round_trip():
    segments = [TimedText(0.5, 2.0, "你好"), TimedText(2.5, 4.0, "world")]
    text = data_dir.timestamped_text(segments)
    assert text == "<|0.50|>你好<|2.00|><|2.50|>world<|4.00|>"
    assert data_dir.parse_timestamped(text) == segments
