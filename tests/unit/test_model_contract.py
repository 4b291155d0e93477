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
