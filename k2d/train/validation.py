"""Validation during training: the held-out audio decoded as the model will be used, scored by corpus MER.

Two forms: short-form (held-out chunks or utterances, each on its own) and long-form (whole dev recordings,
sequential windows with timestamps, exactly as stage 6 decodes a test set). Long-form is what chooses a
checkpoint that does not loop: a model can read single chunks well and still loop across windows.
Decoding uses timestamps, as stages 1, 3 and 6 do. The text is every generated text token."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

import numpy as np
from lhotse import RecordingSet, SupervisionSet

from k2d.config import ConfigError
from k2d.inference.recognizer import TransformersRecognizer
from k2d.inference.settings import GenerationSettings, settings_from_file
from k2d.inference.transcribe import joined_text, transcribe_audios, transcribe_longform
from k2d.manifests import references_by_recording
from k2d.metrics.distances import loop_events
from k2d.metrics.edit import ErrorCounts, error_counts
from k2d.text.units import text_units

log = logging.getLogger(__name__)


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


def longform_mer(
    model, processor, recordings: list, references: dict[str, str], settings: GenerationSettings,
    batch_size: int = 8,
) -> dict[str, float]:
    """Corpus MER of whole recordings decoded long-form (`references`: recording id -> text), with the
    insertions and the paper's loop events that tell a looping model from a deleting one."""
    recognizer = TransformersRecognizer(model, processor)
    total, loops = ErrorCounts(), 0
    for result in transcribe_longform(recognizer, recordings, settings, batch_size):
        text = joined_text(result.segments)
        total = total + error_counts(text_units(references[result.recording_id]), text_units(text))
        loops += loop_events(text)
    return {"mer": total.rate, "insertions": float(total.insertions), "loop_events": float(loops)}


def add_longform_validation_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--valid-recordings", help="dev recordings (target domain) decoded long-form at each "
                        f"validation: the best checkpoint is the one with the lowest MER on them ({default})")
    parser.add_argument("--valid-supervisions", help="references of --valid-recordings")
    parser.add_argument("--valid-decode-config",
                        help="decoding settings of that validation: stage 6's decode.yaml (as the test sets)")


def longform_validator(args: argparse.Namespace, processor, language: str) -> Callable | None:
    """`validate(model)` on the dev recordings the arguments name, or None when they name none. Raises
    ConfigError on arguments or files that do not fit together."""
    if not args.valid_recordings and not args.valid_supervisions:
        return None
    if not (args.valid_recordings and args.valid_supervisions):
        raise ConfigError("--valid-recordings and --valid-supervisions go together (dev recordings, references)")
    references = references_by_recording(SupervisionSet.from_file(args.valid_supervisions))
    recordings = [r for r in RecordingSet.from_file(args.valid_recordings) if r.id in references]
    if not recordings:
        raise ConfigError(f"{args.valid_supervisions} has no reference for a recording of {args.valid_recordings}")
    settings = (settings_from_file(args.valid_decode_config) if args.valid_decode_config
                else GenerationSettings(language=language))
    batch_size = 8
    log.info("validation: %d dev recording(s) of %s decoded long-form (%.0f s of audio)", len(recordings),
             args.valid_recordings, sum(r.duration for r in recordings))
    return lambda model: longform_mer(model, processor, recordings, references, settings, batch_size)
