"""Reruns notice what changed (k2d.provenance): a recording added to the corpus, or a file restored after a
failure, is labelled on the next run without --force and without redoing the rest; training stops and says
so when its data changed."""

import gzip
import json

import numpy as np
import pytest
import soundfile as sf
from lhotse import Recording, RecordingSet

from k2d import chunking, filtering, pseudo_label, validate
from k2d.models.whisper import save_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_whisper):
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model_dir(*tiny_whisper, path)
    return path


def tone(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.2 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
            + 0.01 * rng.standard_normal(t.size)).astype("float32")


def manifest(directory, names):
    path = directory / "recordings.jsonl.gz"
    RecordingSet.from_recordings(Recording.from_file(directory / f"{n}.wav", recording_id=n) for n in names).to_file(
        path)
    return path


def lines(path):
    return path.read_text().splitlines()


def read_jsonl(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_a_new_recording_is_processed_without_force_and_nothing_else_is_redone(model_dir, tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(3):
        sf.write(audio / f"r{i}.wav", tone(12, i), 16000)
    common = ["--model", str(model_dir), "--max-new-tokens", "10", "--batch-size", "2"]
    out = tmp_path / "out"
    segments, chunks, validated = out / "pl.jsonl.gz", out / "chunks.jsonl.gz", out / "validated.jsonl.gz"

    def stages_1_to_4(recordings):
        assert pseudo_label.main(["--recordings", str(recordings), "--output", str(segments), *common]) == 0
        assert chunking.main(["--recordings", str(recordings), "--segments", str(segments), "--output", str(chunks),
                              "--max-chunk", "10"]) == 0
        assert validate.main(["--cuts", str(chunks), "--output", str(validated), *common]) == 0
        assert filtering.main(["--cuts", str(validated), "--output-pattern", str(out / "kept_{metric}.jsonl.gz"),
                               "--report-dir", str(out / "report"), "--metrics", "none"]) == 0

    stages_1_to_4(manifest(audio, ["r0", "r1"]))
    labelling_progress = out / ".progress" / "pl" / "shard-00000-of-00001.jsonl"
    validation_progress = out / ".progress" / "validated" / "shard-00000-of-00001.jsonl"
    first_labels, first_validations = lines(labelling_progress), lines(validation_progress)
    assert len(first_labels) == 2
    capsys.readouterr()
    stages_1_to_4(manifest(audio, ["r0", "r1", "r2"]))  # the corpus grew; stage 0 wrote a new manifest
    log = capsys.readouterr().err
    assert "recordings changed" in log and "chunks changed" in log
    assert lines(labelling_progress)[:2] == first_labels and len(lines(labelling_progress)) == 3  # only r2 labelled
    assert lines(validation_progress)[: len(first_validations)] == first_validations  # old chunks not validated again
    assert {s["recording_id"] for s in read_jsonl(segments)} == {"r0", "r1", "r2"}
    assert {c["id"].split("-chunk")[0] for c in read_jsonl(validated)} == {"r0", "r1", "r2"}
    assert {c["id"].split("-chunk")[0] for c in read_jsonl(out / "kept_none.jsonl.gz")} == {"r0", "r1", "r2"}
    capsys.readouterr()
    stages_1_to_4(manifest(audio, ["r0", "r1", "r2"]))  # nothing changed: every stage skips
    log = capsys.readouterr().err
    assert log.count("skipping") == 4 and len(lines(labelling_progress)) == 3


def test_a_restored_file_is_labelled_on_the_next_run(model_dir, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(2):
        sf.write(audio / f"r{i}.wav", tone(8, i), 16000)
    recordings = manifest(audio, ["r0", "r1"])
    (audio / "r1.wav").rename(tmp_path / "r1.wav")  # gone while stage 1 runs
    segments = tmp_path / "out" / "pl.jsonl.gz"
    args = ["--recordings", str(recordings), "--output", str(segments), "--model", str(model_dir),
            "--max-new-tokens", "8"]
    assert pseudo_label.main(args) == 0
    report = (tmp_path / "out" / "pl_report.yaml").read_text()
    assert "recording: r1" in report and "unreadable" in report
    (tmp_path / "r1.wav").rename(audio / "r1.wav")  # restored
    progress = tmp_path / "out" / ".progress" / "pl" / "shard-00000-of-00001.jsonl"
    before = lines(progress)
    assert pseudo_label.main(args) == 0
    after = lines(progress)
    assert after[: len(before)] == before and len(after) == 3  # r1 once more; r0 not redone
    assert json.loads(after[-1])["id"] == "r1" and json.loads(after[-1])["error"] is None
    report = (tmp_path / "out" / "pl_report.yaml").read_text()
    assert "recording: r1" not in report and "labelled: 2" in report


def test_changed_teacher_stops_stage_1_with_what_to_run(model_dir, tmp_path, capsys, tiny_whisper):
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "r0.wav", tone(6, 0), 16000)
    recordings = manifest(audio, ["r0"])
    output = tmp_path / "pl.jsonl.gz"
    other = tmp_path / "other"
    save_model_dir(*tiny_whisper, other)
    assert pseudo_label.main(["--recordings", str(recordings), "--output", str(output), "--model", str(model_dir),
                              "--max-new-tokens", "6"]) == 0
    config = (other / "config.json").read_text()
    assert '"dropout": 0.0' in config
    (other / "config.json").write_text(config.replace('"dropout": 0.0', '"dropout": 0.1'))  # another teacher
    assert pseudo_label.main(["--recordings", str(recordings), "--output", str(output), "--model", str(other),
                              "--max-new-tokens", "6"]) == 1
    err = capsys.readouterr().err
    assert "teacher changed" in err and "--force" in err


def test_training_stops_when_its_chunks_changed(model_dir, tmp_path, capsys):
    from lhotse import CutSet

    from k2d import distill
    from tests.helpers import write_tiny_cuts

    cuts = write_tiny_cuts(tmp_path / "cuts", count=4)
    args = ["--teacher", str(model_dir), "--train-cuts", str(cuts), "--out-dir", str(tmp_path / "student"),
            "--max-steps", "1", "--valid-percent", "0", "--max-duration", "4", "--num-workers", "0",
            "--num-buckets", "1", "--device", "cpu"]
    assert distill.main(args) == 0
    # no chunk is held out: said, and best/ is the last step, not "MER 0.0000"
    assert "no validation chunks" in capsys.readouterr().err
    summary = (tmp_path / "student" / "summary.yaml").read_text()
    assert "best_valid_mer: null" in summary and "best_step: 1" in summary
    assert (tmp_path / "student" / "best" / "model.safetensors").exists()
    assert distill.main(args) == 0 and "already trained" in capsys.readouterr().err
    CutSet.from_file(cuts).subset(first=3).to_file(cuts)  # the filter now keeps fewer chunks
    assert distill.main(args) == 1
    err = capsys.readouterr().err
    assert "training chunks changed" in err and "--force" in err
