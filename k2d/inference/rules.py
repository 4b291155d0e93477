"""Whisper's decoding rules, as pure functions every backend shares.

- `filter_logits`: the logit filters applied before each token is chosen (openai's SuppressBlank,
  SuppressTokens and ApplyTimestampRules): specials never appear in text; a window starts with a
  timestamp no later than `max_initial_timestamp_index`; timestamps come in pairs (except right before
  <|endoftext|>), never go back in time, and a segment never has zero length; when the timestamps together
  are more likely than any text token, a timestamp is chosen.
- `needs_fallback`, `is_no_speech`: openai's temperature-fallback and no-speech rules for a decoded window.
"""

from __future__ import annotations

import zlib

import torch

from k2d.models.tokenizer import SpecialTokens

NEG_INF = float("-inf")


def filter_logits(
    logits: torch.Tensor, generated: list[list[int]], specials: SpecialTokens, *, timestamps: bool,
    suppress: list[int], begin_suppress: list[int], max_initial_timestamp_index: int | None,
) -> torch.Tensor:
    """Mask (in place) the next-token logits (B, V) of rows whose tokens so far are `generated`."""
    tb, eot = specials.timestamp_begin, specials.eot
    logits[:, suppress] = NEG_INF
    if all(len(g) == 0 for g in generated):
        logits[:, begin_suppress] = NEG_INF
    if not timestamps:
        logits[:, tb:] = NEG_INF
        return logits
    num_timestamps = logits.shape[1] - tb
    first_allowed = torch.zeros(len(generated), dtype=torch.long)  # per row: lowest timestamp index allowed
    for row, seq in enumerate(generated):
        if not seq:
            logits[row, :tb] = NEG_INF  # a window begins with a timestamp
            if max_initial_timestamp_index is not None:
                logits[row, tb + max_initial_timestamp_index + 1 :] = NEG_INF
            continue
        last_was_timestamp = seq[-1] >= tb
        penultimate_was_timestamp = len(seq) < 2 or seq[-2] >= tb
        if last_was_timestamp and penultimate_was_timestamp:
            logits[row, tb:] = NEG_INF  # a pair just closed a segment: text (or the end) follows
        elif last_was_timestamp:
            logits[row, :eot] = NEG_INF  # a segment just ended: another timestamp or the end
        last_time = next((t for t in reversed(seq) if t >= tb), None)
        if last_time is not None:
            # never back in time; after text, strictly later (no zero-length segment)
            opening = last_was_timestamp and not penultimate_was_timestamp
            first_allowed[row] = last_time - tb + (0 if opening else 1)
    positions = torch.arange(num_timestamps)[None, :]
    logits[:, tb:].masked_fill_((positions < first_allowed[:, None]).to(logits.device), NEG_INF)
    # When the timestamps together outweigh every text token, the next token is a timestamp.
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    timestamp_mass = logprobs[:, tb:].logsumexp(dim=-1)
    best_text = logprobs[:, :tb].max(dim=-1).values
    logits[timestamp_mass > best_text, :tb] = NEG_INF
    return logits


def compression_ratio(text: str) -> float:
    """openai's repetition measure: UTF-8 length over zlib-compressed length (looping text compresses well)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def needs_fallback(text: str, avg_logprob: float, no_speech_prob: float, settings) -> bool:
    """openai's rule: re-decode at a higher temperature when the text repeats itself or the model was
    unsure, unless the window is probably silence."""
    degenerate = compression_ratio(text) > settings.compression_ratio_threshold
    unsure = avg_logprob < settings.logprob_threshold
    silent = settings.no_speech_threshold is not None and no_speech_prob > settings.no_speech_threshold
    return (degenerate or unsure) and not silent


def is_no_speech(avg_logprob: float, no_speech_prob: float, settings) -> bool:
    """openai's skip rule: the no-speech token is likely and the decoded text is not confident."""
    if settings.no_speech_threshold is None or no_speech_prob <= settings.no_speech_threshold:
        return False
    return avg_logprob < settings.logprob_threshold
