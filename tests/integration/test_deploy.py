"""Deploying a model: the sherpa-onnx export decoded by the sherpa-onnx package from the registry gives k2d's
text (float32: every utterance; its Python result has no token ids to compare; int8: its MER stated), the
exported encoder sees sherpa-onnx's zero-padded features as k2d's padded audio, the export's metadata and
tokens.txt are Whisper's by hand, and faster-whisper's own transcribe runs an export with a 30 s window (and
is reported as not runnable for a shorter one, which it pads wrongly)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from k2d.audio import SAMPLE_RATE
from k2d.export_onnx import WindowedEncoder, byte_of_char, export_sherpa_onnx, metadata, token_lines
from k2d.inference.backends import load_recognizer
from k2d.inference.settings import GenerationSettings
from k2d.inference.transcribe import decode_windows
from k2d.recipes.mini_cs.corpus import TRAIN_SPEAKERS, render_utterance
from k2d.runtimes import measure_runtimes, runtimes_table, sherpa_transcriber, short_utterances

NO_TIMESTAMPS = GenerationSettings(no_speech_threshold=None, timestamps=False)


@pytest.fixture(scope="module")
def utterances():
    items = [render_utterance(9, "test_in", i, TRAIN_SPEAKERS) for i in range(6)]
    texts = [" ".join(segment.text for segment in item.segments) for item in items]
    return [item.audio.astype(np.float32) for item in items], texts


@pytest.fixture(scope="module")
def validator_onnx(repo_root, tmp_path_factory):
    return export_sherpa_onnx(repo_root / "egs/mini_cs/models/validator", tmp_path_factory.mktemp("x") / "onnx",
                              int8=True)


def test_sherpa_onnx_decodes_the_export_as_k2d_does(repo_root, validator_onnx, utterances):
    audios, _ = utterances
    recognizer = load_recognizer(repo_root / "egs/mini_cs/models/validator")
    k2d = decode_windows(recognizer, audios, NO_TIMESTAMPS)
    sherpa = [sherpa_transcriber(validator_onnx, "zh")(audio) for audio in audios]
    assert [r.text for r in k2d] == sherpa and all(sherpa)


def test_every_runtime_on_the_same_utterances(repo_root, validator_onnx, utterances, tmp_path):
    audios, references = utterances
    exports = tmp_path / "exports"
    exports.mkdir()
    validator_onnx_copy = exports / "export_onnx"
    validator_onnx_copy.symlink_to(validator_onnx, target_is_directory=True)
    rows = {r["runtime"]: r for r in measure_runtimes(repo_root / "egs/mini_cs/models/validator", exports, audios,
                                                      references)}
    assert list(rows) == ["k2d", "ctranslate2", "ctranslate2_int8", "faster_whisper", "sherpa_onnx",
                          "sherpa_onnx_int8"]
    assert rows["ctranslate2"]["same_text"] == rows["sherpa_onnx"]["same_text"] == 1.0
    assert rows["sherpa_onnx"]["mer"] == rows["k2d"]["mer"] < 0.5
    # int8: smaller, and its MER is a number the table states (here within 10 points of float32)
    assert rows["sherpa_onnx_int8"]["size_mb"] < 0.7 * rows["sherpa_onnx"]["size_mb"]
    assert abs(rows["sherpa_onnx_int8"]["mer"] - rows["k2d"]["mer"]) < 0.10
    assert "10 s" in rows["faster_whisper"]["note"] and "rtf" not in rows["faster_whisper"]
    assert "| sherpa_onnx_int8 |" in runtimes_table(list(rows.values()))


def test_short_utterances_reads_those_that_fit_in_the_window(utterances, tmp_path):
    import soundfile as sf
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    audios, texts = utterances
    sf.write(tmp_path / "a.flac", np.concatenate([audios[0], audios[1]]), SAMPLE_RATE)
    recording = Recording.from_file(tmp_path / "a.flac", recording_id="a")
    first, second = audios[0].size / SAMPLE_RATE, audios[1].size / SAMPLE_RATE
    supervisions = [SupervisionSegment("a-0", "a", 0.0, first, text=texts[0]),
                    SupervisionSegment("a-1", "a", first, second, text=texts[1]),
                    SupervisionSegment("a-2", "a", 0.0, first + second, text="too long")]
    RecordingSet.from_recordings([recording]).to_file(tmp_path / "r.jsonl.gz")
    SupervisionSet.from_segments(supervisions).to_file(tmp_path / "s.jsonl.gz")
    read, references = short_utterances(tmp_path / "r.jsonl.gz", tmp_path / "s.jsonl.gz", 5,
                                        window=max(first, second) + 0.1)
    assert references == texts[:2] and [a.size for a in read] == [audios[0].size, audios[1].size]
    assert np.allclose(read[1], audios[1], atol=1e-4)  # flac is 16-bit


def test_the_encoder_reads_sherpa_onnx_zero_padding_as_the_silence_k2d_pads_with(tiny_whisper):
    model, processor = tiny_whisper
    audio = np.random.default_rng(0).normal(0, 0.1, int(2.5 * SAMPLE_RATE)).astype(np.float32)
    # k2d: the audio padded to the 10 s window, then log-mel (transformers' extractor)
    padded = torch.from_numpy(processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE,
                                                          return_tensors="np").input_features)
    # sherpa-onnx: the utterance's frames (every frame whose 400-sample window touches audio), then zeros
    frames = (audio.size + 200) // 160 + 2
    sherpa = torch.cat([padded[:, :, :frames], torch.zeros(1, padded.shape[1], 300)], dim=2)
    encoder = WindowedEncoder(model).eval()
    with torch.no_grad():
        assert torch.allclose(encoder(sherpa)[0], encoder(padded)[0], atol=1e-5)
        states = model.model.encoder(input_features=padded).last_hidden_state
        keys = model.model.decoder.layers[1].encoder_attn.k_proj(states)
    assert torch.allclose(encoder(padded)[0][1], keys, atol=1e-5)
    # longer than the window: cut to it
    with torch.no_grad():
        longer = torch.cat([padded, padded], dim=2)
        assert torch.allclose(encoder(longer)[0], encoder(padded)[0], atol=1e-5)


def test_metadata_and_tokens_are_whispers(tiny_whisper):
    model, processor = tiny_whisper
    tokenizer = processor.tokenizer
    values = metadata(model, tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    assert values["sot_sequence"] == f"{ids('<|startoftranscript|>')},{ids('<|en|>')},{ids('<|transcribe|>')}"
    assert values["eot"] == str(ids("<|endoftext|>")) and values["no_timestamps"] == str(ids("<|notimestamps|>"))
    codes = values["all_language_codes"].split(",")
    assert codes[:3] == ["en", "zh", "de"] and len(codes) == 99  # Whisper Large-v2's order and count
    assert values["all_language_tokens"].split(",")[1] == str(ids("<|zh|>"))
    assert values["n_audio_ctx"] == "500" and values["n_text_layer"] == "4" and values["n_mels"] == "80"
    # GPT-2's byte alphabet: "!" is byte 33, "Ġ" (U+0120) stands for the space (byte 32), "Ā" (U+0100) for byte 0
    alphabet = byte_of_char()
    assert (alphabet["!"], alphabet["\u0120"], alphabet["\u0100"], len(alphabet)) == (33, 32, 0, 256)
    lines = dict(reversed(line.split(" ")) for line in token_lines(tokenizer))
    assert base64.b64decode(lines[str(tokenizer.convert_tokens_to_ids("!"))]) == b"!"
    assert all(int(i) < ids("<|endoftext|>") for i in lines)  # no special or timestamp token


@pytest.mark.slow
def test_faster_whisper_transcribes_a_30_s_window_export_as_k2d_does(utterances, tmp_path):
    from k2d.export import export_ctranslate2
    from k2d.runtimes import faster_whisper_transcriber

    audios, _ = utterances
    exported = export_ctranslate2("whisper-base", tmp_path / "ct2", "float32")  # install.sh's: a 30 s window
    faster = faster_whisper_transcriber(exported, "zh", "float32", 2)
    k2d = load_recognizer("whisper-base", backend="ctranslate2", compute_type="float32")
    settings = GenerationSettings(no_speech_threshold=None, timestamps=False, backend="ctranslate2",
                                  compute_type="float32")
    results = decode_windows(k2d, audios, settings)
    texts = [faster(audio) for audio in audios]
    assert all(texts)
    # the English utterance, which the zero-shot model reads with confidence: the same text. On the Mandarin
    # ones it is unsure of, faster-whisper's own log-mel and blank suppression send greedy search elsewhere
    # (2 of 6 identical when this was written), so only the confident one is compared.
    assert texts[3] == results[3].text.strip() == "Remember to check the label before the deadline"
