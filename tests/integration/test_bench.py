"""The benchmarks run and report ratios (on tiny models; the recorded figures come from real runs)."""

import pytest
from lhotse import CutSet, RecordingSet

from k2d import speed
from k2d.bench import labelling, shapes, training
from k2d.inference.settings import GenerationSettings
from k2d.models.whisper import count_parameters, save_model_dir

pytestmark = pytest.mark.slow


def test_rtf_and_shapes(tiny_whisper, tiny_cuts, tmp_path):
    save_model_dir(*tiny_whisper, tmp_path / "m")
    recordings = RecordingSet.from_recordings(c.recording for c in CutSet.from_file(tiny_cuts))
    chosen = speed.select_audio(recordings, seconds=3.0)
    assert [round(r.duration, 2) for r in chosen] == [2.0, 1.0]  # the second one truncated to make 3 s
    settings = GenerationSettings(max_new_tokens=4)
    rows = speed.measure_rtf({"a": str(tmp_path / "m"), "b": str(tmp_path / "m")}, chosen, runs=1, settings=settings)
    table = speed.rtf_table(rows)
    assert "| a |" in table and "| b |" in table and rows[0]["rtf"] > 0
    assert 0 < rows[0]["encoder_share"] < 1  # the tiny model spends part of its decoding in its encoder
    shape_table = shapes.bench_shapes("tiny-test", tokens=3, batch=1, runs=1, device="cpu", dtype="float32")
    assert "2 decoder layers" in shape_table and "speed-up" in shape_table


def test_train_benchmark(tiny_whisper, tiny_cuts, tmp_path):
    save_model_dir(*tiny_whisper, tmp_path / "m")
    table = training.bench_train(str(tmp_path / "m"), str(tiny_cuts), steps=1, max_duration=4.0, device="cpu")
    for mode in training.TRAIN_MODES.values():
        assert f"| {mode} |" in table


def test_the_train_benchmark_caches_only_the_audio_its_steps_need():
    from types import SimpleNamespace

    cuts = [SimpleNamespace(duration=d) for d in (10.0, 20.0, 30.0, 40.0)]
    assert [c.duration for c in training.bench_cuts(cuts, 25.0)] == [10.0, 20.0]  # 30 s >= 25 s: stop there
    assert len(training.bench_cuts(cuts, 1000.0)) == 4


def test_throughput_spreads_audio_over_the_batch(tiny_whisper, tiny_cuts, tmp_path):
    save_model_dir(*tiny_whisper, tmp_path / "m")
    cuts = CutSet.from_file(tiny_cuts)
    recordings = RecordingSet.from_recordings(c.recording for c in cuts)
    # 3 s over a batch of 2: the first two 2 s recordings, 1.5 s of each
    assert [r.duration for r in speed.spread_audio(recordings, seconds=3.0, count=2)] == [1.5, 1.5]
    recordings.to_file(tmp_path / "recordings.jsonl.gz")
    table = labelling.bench_throughput(str(tmp_path / "m"), str(tmp_path / "m"), str(tmp_path / "recordings.jsonl.gz"),
                                   str(tiny_cuts), seconds=4.0, batch=2, device="cpu",
                                   settings=GenerationSettings(max_new_tokens=4), labels_dir=tmp_path / "labels")
    assert "from 2 recordings" in table and "| stage 3, validator on chunks (transformers) | 2 |" in table
    assert "| stage 1, k2d sequential (ctranslate2) + Silero VAD | 2 |" in table
    assert "| stage 1, k2d batched (ctranslate2, VAD windows) | 4 |" in table
    # faster-whisper runs a model whose window is not 30 s (its padding set to the model's window)
    assert "cannot run" not in table and "| faster-whisper BatchedInferencePipeline (VAD chunks) | 2 |" in table
    # each stage-1 labeller's segments, for stages 2-4 (the random model writes some text on the noise)
    assert (tmp_path / "labels" / "recordings.jsonl.gz").is_file()
    assert (tmp_path / "labels" / "stage_1_k2d_sequential_ctranslate2_b1.jsonl.gz").is_file()


def test_vad_benchmark_decodes_without_vad_and_skips_noise_with_it(tiny_whisper, tiny_cuts, tmp_path):
    from lhotse import SupervisionSet

    save_model_dir(*tiny_whisper, tmp_path / "m")
    cuts = CutSet.from_file(tiny_cuts).subset(first=3)  # 2 s of white noise each: no speech for a detector
    RecordingSet.from_recordings(c.recording for c in cuts).to_file(tmp_path / "recordings.jsonl.gz")
    SupervisionSet.from_segments(s for c in cuts for s in c.supervisions).to_file(tmp_path / "sups.jsonl.gz")
    (tmp_path / "pl.yaml").write_text("max_new_tokens: 4\nbatch_size: 2\ntimestamps: false\n")
    table = labelling.bench_vad(str(tmp_path / "m"), tmp_path / "pl.yaml", str(tmp_path / "recordings.jsonl.gz"),
                            str(tmp_path / "sups.jsonl.gz"), device="cpu")
    without, with_vad = (line.split(" | ") for line in table.splitlines()[-2:])
    assert without[0] == "| without VAD" and with_vad[0] == "| with VAD"
    assert without[2] == "0 s (0%)" and without[3] == "3"  # every recording is one window through the teacher
    assert with_vad[2] == "6 s (100%)" and with_vad[3] == "0" and with_vad[4] == "0"  # nothing reaches it


def test_real_shape_has_whisper_base_parameter_count():
    # openai/whisper-base has 72,593,920 parameters (its Hub page: 72.6M; output projection tied to the embedding)
    assert count_parameters(shapes.random_whisper("base")) == 72_593_920


def test_streaming_train_benchmark_times_each_variant_on_the_same_real_batches(tmp_path):
    import numpy as np
    import soundfile as sf
    import yaml

    from k2d.bench.streaming import bench_stream_train
    from k2d.espnet.tokens import train_tokens

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    texts = {f"u{i}": "a b c d" if i % 2 else "b c a" for i in range(6)}
    for uid in texts:
        sf.write(data / f"{uid}.wav", rng.standard_normal(16000).astype(np.float32) * 0.1, 16000)
    (data / "wav.scp").write_text("".join(f"{u} {data / u}.wav\n" for u in texts))
    (data / "text").write_text("".join(f"{u} {t}\n" for u, t in texts.items()))
    train_tokens(list(texts.values()), tmp_path / "tokens", vocab_size=8, model_type="char")
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "token_type": "bpe", "frontend": "default",
        "frontend_conf": {"n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 20},
        "streaming_encoder_conf": {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 2,
                                   "chunk_size": 4},
        "model_conf": {"head": "transducer", "prediction_size": 8, "joint_size": 8}}))
    table = bench_stream_train(config, data, tmp_path / "tokens", ["base", "narrow:subsampling_channels=4",
                               "ctc:head=ctc"], steps=2, rounds=1, batch_seconds=2.0, device="cpu")
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| row |")]
    assert [r.split(" | ")[0] for r in rows] == ["| base", "| narrow", "| ctc"]
    assert "| base | the config's |" in rows[0] and rows[0].split(" | ")[5] == "1.00x"
    # 6 s of audio in batches of 2 s: 3 batches, 2 of them timed
    assert "2 batches of about 2 s of audio" in table
    with pytest.raises(ValueError, match="audio for 3 batches of 2.0 s, 4 asked"):
        bench_stream_train(config, data, tmp_path / "tokens", ["base"], steps=4, rounds=1, batch_seconds=2.0,
                           device="cpu")
