"""Kaldi/ESPnet data directory export of chunk cuts."""

from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

from k2d.espnet import data_dir


def test_chunks_become_kaldi_utterances(tiny_cuts, tmp_path):
    recording = next(iter(CutSet.from_file(tiny_cuts))).recording
    assert isinstance(recording, Recording)
    cuts = [
        MonoCut("rec-chunk0", 0.0, 1.0, 0, recording=recording, supervisions=[
            SupervisionSegment("s0", recording.id, 0.1, 0.8, text="你好")],
            custom={"text": "你好", "continued": False, "complete_end": 0.9}),
        MonoCut("rec-chunk1", 1.0, 1.0, 0, recording=recording, supervisions=[],
                custom={"text": "world", "continued": True, "complete_end": 0.5}),
    ]
    CutSet.from_cuts(cuts).to_file(tmp_path / "cuts.jsonl.gz")
    assert data_dir.main(["--cuts", str(tmp_path / "cuts.jsonl.gz"), "--out-dir", str(tmp_path / "kaldi")]) == 0
    text = (tmp_path / "kaldi" / "text").read_text(encoding="utf-8").splitlines()
    segments = (tmp_path / "kaldi" / "segments").read_text().splitlines()
    assert text == ["rec-chunk0 你好", "rec-chunk1 world"]
    # the continued chunk is trimmed to its last complete segment: 1.0 + 0.5
    assert [line.split()[2:] for line in segments] == [["0.0", "1.0"], ["1.0", "1.5"]]
    assert (tmp_path / "kaldi" / "wav.scp").read_text().startswith(recording.id)
