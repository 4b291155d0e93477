"""Whisper decoder sequences from timed text: the label format teacher, validator and student learn.

    [<|startofprev|> prompt...] <|startoftranscript|> <|zh|> <|transcribe|> [<|notimestamps|>]
    <|t0|> text <|t1|><|t2|> text <|t3|> ... [<|tK|>] <|endoftext|>

A segment that runs past the end of the window contributes only its start timestamp (Whisper's own
training format: the next window resumes there). Loss is taken on the body and <|endoftext|> only; the
prompt and the forced prefix are masked out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from k2d.models.tokenizer import snap_time
from k2d.text.script import is_chinese_char, join_texts

IGNORE_INDEX = -100
MAX_TARGET_POSITIONS = 448


class LabelTooLong(ValueError):
    """A label that does not fit Whisper's 448-token context: such chunks are dropped, never truncated
    (a truncated label teaches the student to stop early)."""


@dataclass(frozen=True)
class TimedText:
    """A segment of text, times in seconds relative to the window start; end None = runs past the window."""

    start: float
    end: float | None
    text: str


@dataclass
class DecoderLabels:
    input_ids: list[int]  # decoder input, starting with <|startofprev|> or <|startoftranscript|>
    targets: list[int]  # next-token targets, IGNORE_INDEX where no loss is taken
    num_prompt_tokens: int  # tokens before <|startoftranscript|>


def timestamp_token(seconds: float, window: float) -> str:
    return f"<|{snap_time(seconds, window):.2f}|>"


def _text_ids(tokenizer, text: str, leading_space: bool) -> list[int]:
    text = re.sub(r"\s+", " ", text).strip()
    # Latin text after a timestamp starts with a space, as in Whisper's own labels.
    if leading_space and text and not is_chinese_char(text[0]):
        text = " " + text
    return tokenizer.encode(text, add_special_tokens=False) if text else []


def build_decoder_labels(
    tokenizer,
    segments: list[TimedText],
    *,
    window: float,
    language: str = "zh",
    task: str = "transcribe",
    timestamps: bool = True,
    prompt_text: str | None = None,
) -> DecoderLabels:
    """Decoder input and targets for one window or chunk."""
    ids = tokenizer.convert_tokens_to_ids
    body: list[int] = []
    if timestamps:
        for seg in segments:
            body.append(ids(timestamp_token(seg.start, window)))
            if seg.end is None:
                break  # unfinished segment: its start only, then <|endoftext|>
            body += _text_ids(tokenizer, seg.text, leading_space=True)
            body.append(ids(timestamp_token(seg.end, window)))
    else:
        body = _text_ids(tokenizer, join_texts([s.text for s in segments if s.end is not None]), False)
    prefix = [ids("<|startoftranscript|>"), ids(f"<|{language}|>"), ids(f"<|{task}|>")]
    if not timestamps:
        prefix.append(ids("<|notimestamps|>"))
    eot = ids("<|endoftext|>")
    room = MAX_TARGET_POSITIONS - len(prefix) - 1
    if len(body) > room:
        raise LabelTooLong(f"{len(body)} label tokens, more than the {room} that fit the decoder's context")
    prompt: list[int] = []
    if prompt_text:
        prompt_ids = _text_ids(tokenizer, prompt_text, leading_space=False)
        # Whisper keeps at most half the context for the previous text, its most recent tokens.
        keep = min(MAX_TARGET_POSITIONS // 2 - 1, room - len(body))
        if keep > 0 and prompt_ids:
            prompt = [ids("<|startofprev|>")] + prompt_ids[-keep:]
    sequence = prompt + prefix + body + [eot]
    targets = sequence[1:]
    masked = len(prompt) + len(prefix) - 1  # targets that are prompt tokens or the forced prefix
    targets = [IGNORE_INDEX] * masked + targets[masked:]
    return DecoderLabels(sequence[:-1], targets, len(prompt))


def label_variant(timestamps: bool, prompt: bool) -> str:
    """The name of a label form: ts, plain, ts_prompt or plain_prompt (what the teacher cache stores)."""
    return ("ts" if timestamps else "plain") + ("_prompt" if prompt else "")


LABEL_VARIANTS = tuple(label_variant(t, p) for p in (False, True) for t in (True, False))


def label_fits(tokenizer, segments: list[TimedText], window: float, language: str = "zh") -> bool:
    """Whether the longest form of a label (with timestamps, without a prompt) fits the context."""
    try:
        build_decoder_labels(tokenizer, segments, window=window, language=language, timestamps=True)
    except LabelTooLong:
        return False
    return True
