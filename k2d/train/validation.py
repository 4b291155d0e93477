"""Validation during training: greedy short-form decoding of held-out audio, scored by corpus MER.

Decoding uses timestamps, as stages 1 and 6 do: without them a young model loops far more often, and the
validation MER then measures loops rather than recognition."""

from __future__ import annotations

import numpy as np

from k2d.metrics.edit import ErrorCounts, error_counts
from k2d.models.whisper import GenerationSettings
from k2d.text.units import text_units
from k2d.transcribe import transcribe_windows


def decode_mer(
    model, processor, items: list[tuple[np.ndarray, str]], language: str = "zh", batch_size: int = 16
) -> dict[str, float]:
    """Corpus MER of the model's transcripts of `items` = [(audio, reference text)]."""
    total = ErrorCounts()
    settings = GenerationSettings(language=language, timestamps=True)
    for first in range(0, len(items), batch_size):
        chunk = items[first : first + batch_size]
        results = transcribe_windows(model, processor, [audio for audio, _ in chunk], settings)
        for (_, reference), result in zip(chunk, results, strict=True):
            total = total + error_counts(text_units(reference), text_units(result.text))
    return {"mer": total.rate}
