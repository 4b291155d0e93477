"""The CTranslate2 export (k2d.export) decodes like transformers."""

import numpy as np
import pytest

from k2d.models.whisper import load_whisper

pytestmark = pytest.mark.slow


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
