"""The benchmarks run and report ratios (on tiny models; the recorded figures come from real runs)."""

from lhotse import CutSet, RecordingSet

from k2d import bench
from k2d.models.whisper import save_model_dir


def test_rtf_and_shapes(tiny_whisper, tiny_cuts, tmp_path):
    save_model_dir(*tiny_whisper, tmp_path / "m")
    recordings = RecordingSet.from_recordings(c.recording for c in CutSet.from_file(tiny_cuts))
    chosen = bench.select_audio(recordings, seconds=3.0)
    assert [round(r.duration, 2) for r in chosen] == [2.0, 1.0]  # the second one truncated to make 3 s
    settings = bench.GenerationSettings(max_new_tokens=4)
    rows = bench.measure_rtf({"a": str(tmp_path / "m"), "b": str(tmp_path / "m")}, chosen, runs=1, settings=settings)
    table = bench.rtf_table(rows)
    assert "| a |" in table and "| b |" in table and rows[0]["rtf"] > 0
    shapes = bench.bench_shapes("tiny-test", tokens=3, batch=1, runs=1, device="cpu", dtype="float32")
    assert "2 decoder layers" in shapes and "speed-up" in shapes


def test_train_benchmark(tiny_whisper, tiny_cuts, tmp_path):
    save_model_dir(*tiny_whisper, tmp_path / "m")
    table = bench.bench_train(str(tmp_path / "m"), str(tiny_cuts), steps=1, max_duration=4.0, device="cpu")
    assert "CE only" in table and "encoder shared" in table and "two encoders" in table
