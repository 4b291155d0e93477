"""The backend factory: a model name and a stage's settings -> a recognizer of the chosen backend
(transformers or CTranslate2), beside the backends themselves (k2d.inference.recognizer,
k2d.inference.ctranslate2_backend), which know nothing of each other.

    recognizer = load_recognizer("egs/mini_cs/models/teacher", backend="ctranslate2")
    recognizer = recognizer_for(stage_config, "whisper-base", "cpu")
"""

from __future__ import annotations

from k2d.inference.ctranslate2_backend import load_ctranslate2_recognizer
from k2d.inference.recognizer import Recognizer, TransformersRecognizer
from k2d.models.whisper import load_whisper


def load_recognizer(name_or_path, device: str = "cpu", dtype: str = "float32", backend: str = "transformers",
                    mix_lang_emb: bool = False, compute_type: str = "auto") -> Recognizer:
    """A model (Hub id, directory or installed name) behind the chosen backend, ready to decode."""
    if backend == "ctranslate2":
        return load_ctranslate2_recognizer(name_or_path, device=device, dtype=dtype, mix_lang_emb=mix_lang_emb,
                                           compute_type=compute_type)
    model, processor = load_whisper(name_or_path, device=device, dtype=dtype, mix_lang_emb=mix_lang_emb)
    return TransformersRecognizer(model, processor, str(name_or_path))


def recognizer_for(settings, model: str, device: str) -> Recognizer:
    """The recognizer a stage's settings ask for (backend, dtype, compute type, mixed embedding)."""
    return load_recognizer(model, device=device, dtype=settings.dtype, backend=settings.backend,
                           mix_lang_emb=settings.mix_lang_emb, compute_type=settings.compute_type)
