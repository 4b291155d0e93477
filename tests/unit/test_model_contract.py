"""The ESPnet model contract, the export that transformers' ASR pipeline loads, and model loading errors."""

import numpy as np
import pytest
import torch
from espnet2.train.abs_espnet_model import AbsESPnetModel
from transformers import pipeline

from k2d.models.whisper import load_whisper, save_model_dir
from k2d.train.data import Collator, LabelOptions, make_example
from k2d.train.labels import TimedText
from k2d.train.model import WhisperKDModel


def test_espnet_forward_matches_the_trainer_path(tiny_whisper):
    model, processor = tiny_whisper
    kd = WhisperKDModel(model, beta=1.0, gamma=0.0, feature_extractor=processor.feature_extractor).eval()
    assert isinstance(kd, AbsESPnetModel)
    rng = np.random.default_rng(0)
    audios = [rng.standard_normal(16000 * seconds).astype("float32") * 0.1 for seconds in (2, 1)]
    texts = ["我们用 GPU", "模型"]
    options = LabelOptions(window=10.0, timestamp_prob=0.0, prompt_prob=0.0)
    examples = [make_example(f"e{i}", a, [TimedText(0.0, 1.0, t)], processor.tokenizer, options, 0)
                for i, (a, t) in enumerate(zip(audios, texts, strict=True))]
    batch = Collator(processor.feature_extractor, processor.tokenizer.eos_token_id)(examples)
    loss_trainer, _, _ = kd(batch=batch)
    # ESPnet call: raw waveforms + whole decoder sequences padded with -1
    speech = torch.zeros(2, 32000)
    speech[0], speech[1, :16000] = torch.from_numpy(audios[0]), torch.from_numpy(audios[1])
    sequences = [e.labels.input_ids + [e.labels.targets[-1]] for e in examples]
    text = torch.full((2, max(map(len, sequences))), -1)
    for i, s in enumerate(sequences):
        text[i, : len(s)] = torch.tensor(s)
    prefix = 4  # <|startoftranscript|><|zh|><|transcribe|><|notimestamps|>: no loss
    loss_espnet, stats, weight = kd(speech, torch.tensor([32000, 16000]), text, torch.tensor(list(map(len, sequences))),
                                    text_loss_start=torch.tensor([prefix, prefix]))
    assert loss_espnet.item() == pytest.approx(loss_trainer.item(), rel=1e-5)
    assert int(weight) == batch.num_tokens
    assert kd.collect_feats(speech, torch.tensor([32000, 16000]))["feats"].shape == (2, 80, 1000)


def test_exported_model_runs_in_the_transformers_asr_pipeline(tiny_whisper, tmp_path):
    model, processor = tiny_whisper
    save_model_dir(model, processor, tmp_path / "export")
    asr = pipeline("automatic-speech-recognition", model=str(tmp_path / "export"), device="cpu")
    audio = (np.sin(np.arange(16000 * 3) * 0.01) * 0.1).astype("float32")
    result = asr({"raw": audio, "sampling_rate": 16000}, generate_kwargs={"language": "zh", "max_new_tokens": 5})
    assert isinstance(result["text"], str)
    reloaded, _ = load_whisper(tmp_path / "export")
    assert torch.equal(reloaded.proj_out.weight, model.proj_out.weight)


def test_mix_lang_emb_is_applied_once(tiny_whisper, tmp_path):
    model, processor = tiny_whisper
    save_model_dir(model, processor, tmp_path / "teacher")
    zh, en = processor.tokenizer.convert_tokens_to_ids(["<|zh|>", "<|en|>"])
    original = model.get_decoder().embed_tokens.weight.detach().clone()
    mixed, _ = load_whisper(tmp_path / "teacher", mix_lang_emb=True)
    once = mixed.get_decoder().embed_tokens.weight.detach()
    assert torch.allclose(once[zh], 0.5 * (original[zh] + original[en]))
    save_model_dir(mixed, processor, tmp_path / "student")  # e.g. a student built from a mixed teacher
    again, _ = load_whisper(tmp_path / "student", mix_lang_emb=True)
    assert torch.equal(again.get_decoder().embed_tokens.weight[zh], once[zh])  # not mixed a second time


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_whisper(str(tmp_path / "no_model"))
    with pytest.raises(RuntimeError, match="offline"):
        load_whisper("openai/whisper-nonexistent-k2d-test")


def test_ctranslate2_export_decodes_like_transformers(repo_root, tmp_path):
    """CTranslate2 (faster-whisper's engine, an independent Whisper implementation) must give the same greedy
    transcripts as transformers for the shipped demo validator on three synthesized test utterances."""
    import ctranslate2

    from k2d.export import export_ctranslate2
    from k2d.inference.recognizer import TransformersRecognizer
    from k2d.inference.settings import GenerationSettings
    from k2d.inference.transcribe import decode_windows
    from k2d.recipes.mini_cs.corpus import TRAIN_SPEAKERS, render_utterance

    model_dir = repo_root / "egs/mini_cs/models/validator"
    out = export_ctranslate2(model_dir, tmp_path / "ct2", quantization="float32")
    expected_files = {"model.bin", "vocabulary.json", "tokenizer.json", "preprocessor_config.json"}
    assert expected_files <= {p.name for p in out.iterdir()}
    items = [render_utterance(7, "test_in", i, TRAIN_SPEAKERS) for i in range(3)]
    audios = [item.audio for item in items]
    model, processor = load_whisper(model_dir)
    settings = GenerationSettings(timestamps=False, max_new_tokens=100, no_speech_threshold=None)
    expected = [w.text for w in decode_windows(TransformersRecognizer(model, processor), audios, settings)]

    features = processor.feature_extractor(audios, sampling_rate=16000, return_tensors="np").input_features
    prompt = processor.tokenizer.convert_tokens_to_ids(
        ["<|startoftranscript|>", "<|zh|>", "<|transcribe|>", "<|notimestamps|>"])
    ct2_model = ctranslate2.models.Whisper(str(out), device="cpu")
    results = ct2_model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)), [prompt] * 3,
                                 max_length=100)
    got = [processor.tokenizer.decode(r.sequences_ids[0], skip_special_tokens=True).strip() for r in results]
    assert got == expected
    assert all(text for text in got)
