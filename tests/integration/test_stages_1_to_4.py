"""Stages 1-4 on awkward audio, and resuming stages 1 and 3 after a crash midway.

A tiny randomly initialised Whisper stands in for teacher and validator here (its transcripts are noise);
the shipped demo models are exercised by the end-to-end recipe test.
"""

import gzip
import json

import numpy as np
import pytest
import soundfile as sf
from lhotse import AudioSource, Recording, RecordingSet

from k2d import chunking, filtering, pseudo_label, validate
from k2d.models.whisper import save_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_whisper):
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model_dir(*tiny_whisper, path)
    return path


def speechlike(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    bursts = 0.2 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)  # a tone switched on and off
    return (bursts + 0.01 * rng.standard_normal(t.size)).astype("float32")


def bad_audio_manifest(directory):
    directory.mkdir(parents=True, exist_ok=True)
    sf.write(directory / "good.wav", speechlike(25), 16000)
    sf.write(directory / "stereo_8k.wav", np.stack([speechlike(12, 8000), speechlike(12, 8000, 1)], axis=1), 8000)
    sf.write(directory / "silent.flac", np.zeros(16000 * 12, dtype="float32"), 16000)
    with_nan = speechlike(12)
    with_nan[5000:5100] = np.nan
    sf.write(directory / "nan.wav", with_nan, 16000, subtype="FLOAT")
    sf.write(directory / "empty.wav", np.zeros(0, dtype="float32"), 16000)
    sf.write(directory / "deleted.wav", speechlike(5), 16000)
    recordings = [Recording.from_file(directory / name) for name in
                  ("good.wav", "stereo_8k.wav", "silent.flac", "nan.wav", "empty.wav", "deleted.wav")]
    (directory / "deleted.wav").unlink()  # listed in the manifest, gone from disk
    (directory / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    source = AudioSource("file", [0], str(directory / "corrupt.wav"))
    recordings.append(Recording("corrupt", [source], 16000, 16000 * 10, 10.0))
    path = directory / "recordings.jsonl.gz"
    RecordingSet.from_recordings(recordings).to_file(path)
    return path


def read_jsonl(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_bad_audio_goes_through_stages_1_to_4(model_dir, tmp_path):
    recordings = bad_audio_manifest(tmp_path / "audio")
    segments = tmp_path / "pseudo" / "x_supervisions_bad-pl.jsonl.gz"
    common = ["--model", str(model_dir), "--max-new-tokens", "12", "--batch-size", "3"]
    assert pseudo_label.main(["--recordings", str(recordings), "--output", str(segments), *common]) == 0
    report = (segments.parent / "x_supervisions_bad-pl_report.yaml").read_text()
    for name, reason in (("silent", "all silence"), ("nan", "NaN"), ("empty", "empty"), ("deleted", "unreadable"),
                         ("corrupt", "unreadable")):
        assert f"recording: {name}" in report and reason in report, (name, report)
    assert "recording: good" not in report and "recording: stereo_8k" not in report
    labelled = {s["recording_id"] for s in read_jsonl(segments)}
    assert labelled == {"good", "stereo_8k"}  # both usable recordings got segments, no other did
    assert "zero_length_segments: 0" in report and "out_of_order_segments: 0" in report
    chunks = tmp_path / "cuts" / "x_cuts_bad-chunks.jsonl.gz"
    assert chunking.main(["--recordings", str(recordings), "--segments", str(segments), "--output", str(chunks),
                          "--max-chunk", "10"]) == 0
    chunk_ids = [c["id"] for c in read_jsonl(chunks)]
    assert {i.split("-chunk")[0] for i in chunk_ids} == {"good", "stereo_8k"}
    validated = tmp_path / "cuts" / "x_cuts_bad-validated.jsonl.gz"
    assert validate.main(["--cuts", str(chunks), "--output", str(validated), *common]) == 0
    validated_cuts = read_jsonl(validated)
    assert [c["id"] for c in validated_cuts] == chunk_ids
    assert all(c["custom"]["distances"] is not None for c in validated_cuts)
    kept_pattern = str(tmp_path / "cuts" / "kept_{metric}.jsonl.gz")
    assert filtering.main(["--cuts", str(validated), "--output-pattern", kept_pattern,
                           "--report-dir", str(tmp_path / "report"), "--metrics", "none,composite"]) == 0
    assert (tmp_path / "report" / "distance_histograms.png").stat().st_size > 1000


def test_stage_1_decodes_each_window_once(model_dir, tmp_path, monkeypatch):
    """Regression: transformers' `generate` on a window that ends inside a segment decodes the rest of the
    window again in the same call and returns both passes concatenated, timestamps restarting at <|0.00|>.
    Taken as one pass, that made zero-length segments and segments going back in time. Stage 1 now
    decodes each window exactly once itself; here `generate` behaves like the multi-pass loop."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperTokenizer

    tokenizer = WhisperTokenizer.from_pretrained(model_dir)

    def multi_pass_generate(self, input_features, **kwargs):
        t = tokenizer.convert_tokens_to_ids
        pieces = ["<|startoftranscript|>", "<|zh|>", "<|transcribe|>", "<|0.00|>", "模型", "<|2.00|>", "<|2.00|>",
                  "资料", "<|0.00|>", "资料", "<|1.00|>", "<|endoftext|>"]  # pass 1, then pass 2 from 2.00 s
        row = [t(p) if p.startswith("<|") else tokenizer.encode(p, add_special_tokens=False)[0] for p in pieces]
        return torch.tensor([row] * input_features.shape[0])

    monkeypatch.setattr(WhisperForConditionalGeneration, "generate", multi_pass_generate)
    sf.write(tmp_path / "r.wav", speechlike(14), 16000)
    manifest = tmp_path / "recordings.jsonl.gz"
    RecordingSet.from_recordings([Recording.from_file(tmp_path / "r.wav")]).to_file(manifest)
    segments_path = tmp_path / "pl.jsonl.gz"
    assert pseudo_label.main(["--recordings", str(manifest), "--output", str(segments_path), "--model",
                              str(model_dir), "--max-new-tokens", "12"]) == 0
    segments = read_jsonl(segments_path)
    assert segments, "the recording got no segment"
    assert all(s["duration"] > 0 for s in segments)
    ends = [s["start"] + s["duration"] for s in segments]
    assert all(s["start"] >= end - 0.02 for s, end in zip(segments[1:], ends, strict=False))
    report = (tmp_path / "pl_report.yaml").read_text()
    assert "zero_length_segments: 0" in report and "out_of_order_segments: 0" in report


class Crash(Exception):
    pass


def crash_after(module, name, count, monkeypatch):
    """Make module.name (a generator function) raise after `count` items: a kill in the middle of a stage."""
    real = getattr(module, name)

    def crashing(*args, **kwargs):
        for n, item in enumerate(real(*args, **kwargs)):
            if n == count:
                raise Crash()
            yield item

    monkeypatch.setattr(module, name, crashing)


@pytest.mark.slow
def test_stage_1_and_3_resume_after_a_crash(model_dir, tmp_path, monkeypatch):
    audio = tmp_path / "audio"
    audio.mkdir()
    recordings = []
    for i in range(4):
        sf.write(audio / f"r{i}.wav", speechlike(14, seed=i), 16000)
        recordings.append(Recording.from_file(audio / f"r{i}.wav"))
    manifest = tmp_path / "recordings.jsonl.gz"
    RecordingSet.from_recordings(recordings).to_file(manifest)
    common = ["--model", str(model_dir), "--max-new-tokens", "12", "--batch-size", "1"]

    def run_all(out, crash_stage=None):
        segments, chunks, validated = out / "pl.jsonl.gz", out / "chunks.jsonl.gz", out / "validated.jsonl.gz"
        if crash_stage == 1:
            with monkeypatch.context() as m:
                crash_after(pseudo_label, "transcribe_recordings", 2, m)
                with pytest.raises(Crash):
                    pseudo_label.main(["--recordings", str(manifest), "--output", str(segments), *common])
            assert not segments.exists()  # no half-written output
        assert pseudo_label.main(["--recordings", str(manifest), "--output", str(segments), *common]) == 0
        assert chunking.main(["--recordings", str(manifest), "--segments", str(segments), "--output", str(chunks),
                              "--max-chunk", "10"]) == 0
        if crash_stage == 3:
            with monkeypatch.context() as m:
                crash_after(validate, "batches", 1, m)
                with pytest.raises(Crash):
                    validate.main(["--cuts", str(chunks), "--output", str(validated), *common])
        assert validate.main(["--cuts", str(chunks), "--output", str(validated), *common]) == 0
        return read_jsonl(segments), read_jsonl(validated)

    straight = run_all(tmp_path / "straight")
    assert run_all(tmp_path / "crash1", crash_stage=1) == straight
    assert run_all(tmp_path / "crash3", crash_stage=3) == straight
    # resumed runs did each item once: one progress line per recording / chunk
    progress = tmp_path / "crash1" / ".progress" / "pl" / "shard-00000-of-00001.jsonl"
    assert len(progress.read_text().splitlines()) == 4
