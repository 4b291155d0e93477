"""Transcription with Whisper models: one window per audio (short-form), or whole recordings window by
window (long-form, sequential, batched across recordings).

Long-form follows Whisper's sequential algorithm: decode a window with timestamps; if its last segment is
unfinished, the next window starts at the end of the last complete segment, otherwise right after the
window. Each active recording contributes one window to every batch, so several recordings decode at once,
and audio is read window by window, so hours-long files are never loaded whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from k2d.models.tokenizer import TIME_PRECISION
from k2d.models.whisper import GenerationSettings, window_seconds
from k2d.text.script import join_texts

log = logging.getLogger(__name__)
SAMPLE_RATE = 16000


@dataclass
class Segment:
    start: float  # seconds, relative to the audio passed in (long-form: to the recording)
    end: float
    text: str


@dataclass
class WindowResult:
    segments: list[Segment]  # complete segments (long-form) or one segment spanning the text (no timestamps)
    text: str
    next_offset: float  # where the next window should start, relative to this window's start
    tokens: list[int] = field(default_factory=list)


class SuppressTimestampsAfter(LogitsProcessor):
    """Forbid timestamp tokens beyond the window (or the audio's end): the timestamp processor allows up to 30 s."""

    def __init__(self, first_timestamp_id: int, max_timestamp_index: int):
        self.cutoff = first_timestamp_id + max_timestamp_index + 1

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores[:, self.cutoff :] = -float("inf")
        return scores


def parse_window_tokens(
    tokens: list[int], tokenizer, window: float, audio_seconds: float
) -> tuple[list[Segment], float]:
    """Complete (start, end, text) segments of one window's generated tokens, and where to seek next.

    `<|t0|> text <|t1|><|t2|> text` ends with an unfinished segment: seek to t1, the last complete end.
    Output that ends with a complete segment, or holds no complete segment, moves on by the window
    (or the remaining audio). Times are clipped to the audio.
    """
    first_ts = tokenizer.convert_tokens_to_ids("<|0.00|>")
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    segments: list[Segment] = []
    start: float | None = None
    text_ids: list[int] = []
    for token in tokens:
        if token == eot:
            break
        if token >= first_ts:
            time = min((token - first_ts) * TIME_PRECISION, audio_seconds)
            if start is None:
                start, text_ids = time, []
            else:
                text = tokenizer.decode(text_ids, skip_special_tokens=True).strip()
                if text:
                    segments.append(Segment(start, max(time, start), text))
                start, text_ids = None, []
        elif token < eot:
            if start is None:  # text without an opening timestamp: treat as starting at the last end
                start = segments[-1].end if segments else 0.0
            text_ids.append(token)
    unfinished = start is not None
    if unfinished and segments and segments[-1].end > 0:
        seek = segments[-1].end
    else:
        seek = min(window, audio_seconds)
    return segments, seek


def _generation_kwargs(model, tokenizer, settings: GenerationSettings, timestamps: bool, max_timestamp: float):
    window = window_seconds(model)
    max_new = min(settings.max_new_tokens, model.config.max_target_positions // 2 - 4)
    kwargs = dict(
        language=settings.language,
        task=settings.task,
        return_timestamps=timestamps,
        num_beams=settings.num_beams,
        max_new_tokens=max_new,
    )
    if timestamps:
        index = int(round(min(window, max_timestamp) / TIME_PRECISION))
        kwargs["logits_processor"] = LogitsProcessorList(
            [SuppressTimestampsAfter(tokenizer.convert_tokens_to_ids("<|0.00|>"), index)]
        )
    if settings.temperature_fallback:
        kwargs.update(
            temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), compression_ratio_threshold=2.4, logprob_threshold=-1.0,
            do_sample=False,
        )
    return kwargs


@torch.no_grad()
def transcribe_windows(
    model, processor, audios: list[np.ndarray], settings: GenerationSettings, timestamps: bool | None = None
) -> list[WindowResult]:
    """Decode each audio (at most one window long) in one batch."""
    if not audios:
        return []
    timestamps = settings.timestamps if timestamps is None else timestamps
    window = window_seconds(model)
    tokenizer = processor.tokenizer
    features = processor.feature_extractor(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    features = features.to(model.device, model.dtype)
    longest = max(a.size for a in audios) / SAMPLE_RATE
    output = model.generate(features, **_generation_kwargs(model, tokenizer, settings, timestamps, longest))
    sequences = output["sequences"] if isinstance(output, dict) else output
    results = []
    prefix_ids = set(tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|notimestamps|>"]))
    prefix_ids |= set(model.generation_config.lang_to_id.values()) | set(model.generation_config.task_to_id.values())
    for row, audio in zip(sequences.tolist(), audios):
        tokens = [t for t in row if t not in prefix_ids]
        seconds = audio.size / SAMPLE_RATE
        if timestamps:
            segments, seek = parse_window_tokens(tokens, tokenizer, window, seconds)
            text = join_texts([s.text for s in segments])
        else:
            text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
            segments, seek = ([Segment(0.0, seconds, text)] if text else []), min(window, seconds)
        results.append(WindowResult(segments, text, seek, tokens))
    return results
