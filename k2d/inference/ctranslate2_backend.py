"""The CTranslate2 backend (faster-whisper's engine) of the inference core.

k2d keeps its own long-form algorithm (k2d.inference.transcribe: seek, fallback, no-speech, prompts); only
one-pass window decoding runs in CTranslate2 (`ctranslate2.models.Whisper.encode` and `generate`, which
apply Whisper's timestamp rules themselves). A transformers model directory is converted once with
k2d.export (float32 weights) into $K2D_MODELS/ct2-cache/, keyed by the model's fingerprint; a CTranslate2
directory (model.bin) is used as it is. The compute type is chosen at load time: `float16` on a GPU and
`float32` on a CPU by default (`int8`, `int8_float16`... for speed).

    recognizer = load_ctranslate2_recognizer("whisper-base", device="cpu", compute_type="int8")
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

import numpy as np

from k2d.inference.recognizer import Hypothesis, Recognizer

log = logging.getLogger(__name__)


class CTranslate2Recognizer(Recognizer):
    backend = "ctranslate2"

    def __init__(self, model, tokenizer, feature_extractor, generation_config, max_source_positions: int,
                 max_target_positions: int, name: str, device: str, model_dir: Path):
        super().__init__(tokenizer, feature_extractor, generation_config, max_source_positions, max_target_positions,
                         name)
        self.model, self.device, self.model_dir = model, device, model_dir  # model_dir: what faster-whisper loads

    def encode(self, audios: list[np.ndarray]):
        import ctranslate2

        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(self.features(audios)))
        return self.model.encode(features, to_cpu=False)

    def select(self, encoded, rows: list[int]):
        """Rows of an encoder output (fallback decodes a subset again)."""
        import ctranslate2

        if self.device == "cpu":
            return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[rows]))
        import torch

        return ctranslate2.StorageView.from_array(torch.as_tensor(encoded, device="cuda")[rows].contiguous())

    def generate(self, encoded, prefixes: list[list[int]], temperature: float = 0.0, num_beams: int = 1,
                 max_new_tokens: int = 224, timestamps: bool = True) -> list[Hypothesis]:
        longest = max(len(p) for p in prefixes)
        budget = max(1, min(max_new_tokens, self.max_target_positions - longest))
        suppress = self.suppress if timestamps else self.suppress + list(
            range(self.specials.timestamp_begin, len(self.tokenizer)))
        # Measured (ctranslate2 4.8): Whisper's generate makes max_length / 2 new tokens at most, so asking for
        # twice the budget gives the budget transformers' path decodes with.
        options = dict(max_length=2 * budget, return_scores=True, return_no_speech_prob=True,
                       suppress_tokens=suppress, suppress_blank=bool(self.begin_suppress),
                       max_initial_timestamp_index=self.max_initial_timestamp_index or 0)
        if temperature > 0:
            options.update(sampling_topk=0, sampling_temperature=temperature, beam_size=1)
        else:
            options.update(beam_size=num_beams)
        results = self.model.generate(encoded, prefixes, **options)
        hypotheses = []
        for result in results:
            # the tokens after the prefix; the score is the mean log-probability per token (length penalty 1)
            tokens = [t for t in result.sequences_ids[0] if t != self.specials.eot]
            hypotheses.append(Hypothesis(tokens, result.scores[0] * max(1, len(tokens)), float(result.no_speech_prob)))
        return hypotheses


def converted_dir(model_dir: Path, mix_lang_emb: bool) -> Path:
    """Where the CTranslate2 conversion of a transformers model directory lives (made once)."""
    from k2d import provenance
    from k2d.models.names import models_dir

    key = hashlib.sha256(f"{provenance.fingerprint(model_dir)}|{mix_lang_emb}".encode()).hexdigest()[:16]
    return models_dir() / "ct2-cache" / f"{Path(model_dir).name}-{key}"


def load_ctranslate2_recognizer(name_or_path, device: str = "cpu", dtype: str = "float32",
                                mix_lang_emb: bool = False, compute_type: str = "auto") -> CTranslate2Recognizer:
    import ctranslate2
    from transformers import GenerationConfig, WhisperConfig, WhisperProcessor

    from k2d.export import export_ctranslate2
    from k2d.models.names import resolve_model
    from k2d.models.whisper import load_whisper, resolve_device, save_model_dir
    from k2d.utils import exclusive

    source = Path(resolve_model(str(name_or_path)))
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"model {name_or_path}: the ctranslate2 backend needs a local model directory "
                                "(a transformers save_pretrained directory, or a CTranslate2 one)")
    torch_device = resolve_device(device)
    if (source / "model.bin").is_file():  # a CTranslate2 directory (e.g. whisper-base-ct2)
        ct2_dir, hf_dir = source, None
        if mix_lang_emb:
            raise ValueError("mix_lang_emb needs the transformers model (the CTranslate2 weights are not edited)")
    else:
        hf_dir, ct2_dir = source, converted_dir(source, mix_lang_emb)
        # shards of one stage start together: one converts, the others wait for it and use its output
        with exclusive(ct2_dir.with_name(ct2_dir.name + ".lock"), f"converting {source}", wait=True):
            if not (ct2_dir / "model.bin").is_file():
                log.info("converting %s to CTranslate2 (once) -> %s", source, ct2_dir)
                if mix_lang_emb:
                    with tempfile.TemporaryDirectory() as tmp:
                        save_model_dir(*load_whisper(source, mix_lang_emb=True), Path(tmp) / "mixed")
                        export_ctranslate2(Path(tmp) / "mixed", ct2_dir, "float32")
                else:
                    export_ctranslate2(source, ct2_dir, "float32")
    if compute_type == "auto":
        compute_type = "float16" if torch_device.type == "cuda" and dtype != "float32" else "float32"
    index = torch_device.index or 0
    model = ctranslate2.models.Whisper(str(ct2_dir), device=torch_device.type, device_index=index,
                                       compute_type=compute_type)
    if hf_dir is not None:
        processor = WhisperProcessor.from_pretrained(hf_dir)
        tokenizer, extractor = processor.tokenizer, processor.feature_extractor
        generation_config = GenerationConfig.from_pretrained(hf_dir)
        config = WhisperConfig.from_pretrained(hf_dir)
        source_positions, target_positions = config.max_source_positions, config.max_target_positions
    else:
        tokenizer, extractor, generation_config, source_positions, target_positions = _ct2_directory_parts(ct2_dir)
    return CTranslate2Recognizer(model, tokenizer, extractor, generation_config, source_positions,
                                 target_positions, str(name_or_path), torch_device.type, ct2_dir)


def _ct2_directory_parts(ct2_dir: Path):
    """Tokenizer, feature extractor and generation config of a CTranslate2 directory (as k2d.models.import_ct2 reads
    them); the window and context lengths from model.bin's position tables."""
    import json

    from transformers import WhisperFeatureExtractor

    from k2d.models.import_ct2 import generation_config, load_ct2_tokenizer, read_ct2_model

    _, variables, _ = read_ct2_model(ct2_dir / "model.bin")
    source_positions = variables["encoder/position_encodings/encodings"].shape[0]
    target_positions = variables["decoder/position_encodings/encodings"].shape[0]
    tokenizer = load_ct2_tokenizer(ct2_dir)
    if (ct2_dir / "preprocessor_config.json").is_file():
        extractor = WhisperFeatureExtractor.from_pretrained(ct2_dir)
    else:
        extractor = WhisperFeatureExtractor(feature_size=variables["encoder/conv1/weight"].shape[1],
                                            chunk_length=int(source_positions / 50))
    config = json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))
    return tokenizer, extractor, generation_config(config, tokenizer, target_positions), source_positions, \
        target_positions
