"""Validation during training: greedy short-form decoding of held-out audio, scored by corpus MER.

Decoding uses timestamps, as stages 1, 3 and 6 do: without them a young model loops far more often, and
the validation MER then measures loops rather than recognition. The text is every generated text token."""

from __future__ import annotations

import numpy as np

from k2d.inference.recognizer import TransformersRecognizer
from k2d.inference.settings import GenerationSettings
from k2d.inference.transcribe import transcribe_audios
from k2d.metrics.edit import ErrorCounts, error_counts
from k2d.text.units import text_units


def decode_mer(
    model, processor, items: list[tuple[np.ndarray, str]], language: str = "zh", batch_size: int = 16
) -> dict[str, float]:
    """Corpus MER of the model's transcripts of `items` = [(audio, reference text)]."""
    recognizer = TransformersRecognizer(model, processor)
    settings = GenerationSettings(language=language, timestamps=True, no_speech_threshold=None)
    total = ErrorCounts()
    results = transcribe_audios(recognizer, (audio for audio, _ in items), settings, batch_size)
    for (_, reference), result in zip(items, results, strict=True):
        total = total + error_counts(text_units(reference), text_units(result.text))
    return {"mer": total.rate}
