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


def _generation_kwargs(model, settings: GenerationSettings, timestamps: bool):
    # Timestamps past the audio (the timestamp processor allows up to 30 s) are clipped when parsing: a custom
    # logits processor here makes transformers 5.23 repeat the generated sequence.
    max_new = min(settings.max_new_tokens, model.config.max_target_positions // 2 - 4)
    kwargs = dict(
        language=settings.language,
        task=settings.task,
        return_timestamps=timestamps,
        num_beams=settings.num_beams,
        max_new_tokens=max_new,
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
    output = model.generate(features, **_generation_kwargs(model, settings, timestamps))
    sequences = output["sequences"] if isinstance(output, dict) else output
    results = []
    prefix_ids = set(tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|notimestamps|>"]))
    prefix_ids |= set(model.generation_config.lang_to_id.values()) | set(model.generation_config.task_to_id.values())
    for row, audio in zip(sequences.tolist(), audios, strict=True):
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


class AudioError(RuntimeError):
    """A recording that cannot be used; the message says why."""


def read_window(recording, offset: float, duration: float) -> np.ndarray:
    """Mono 16 kHz float32 samples of [offset, offset + duration) of a lhotse Recording, read from disk
    without loading the rest of the file. Several channels are averaged; other rates are resampled."""
    if recording.sampling_rate != SAMPLE_RATE:
        recording = recording.resample(SAMPLE_RATE)
    duration = min(duration, recording.duration - offset)
    if duration <= 0:
        return np.zeros(0, dtype=np.float32)
    try:
        audio = recording.load_audio(offset=offset, duration=duration)
    except Exception as error:  # lhotse raises many kinds; the stage reports the file and goes on
        raise AudioError(f"unreadable at {offset:.1f} s: {type(error).__name__}: {error}") from None
    audio = audio.mean(axis=0) if audio.ndim == 2 else audio
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"NaN or infinite samples in {offset:.1f}-{offset + duration:.1f} s")
    return audio.astype(np.float32)


@dataclass
class LongFormResult:
    recording_id: str
    segments: list[Segment]
    error: str | None = None  # why the recording was skipped
    decoded_seconds: float = 0.0  # audio that went through the model (silent windows are skipped)


@dataclass(eq=False)  # jobs are compared by identity
class _Job:
    recording: object
    offset: float = 0.0
    segments: list[Segment] = field(default_factory=list)
    decoded_seconds: float = 0.0


def transcribe_longform(
    model, processor, recordings, settings: GenerationSettings, batch_size: int = 8, silence_rms: float = 1e-4
):
    """Yield a LongFormResult per recording, decoding up to `batch_size` recordings side by side.

    Windows quieter than `silence_rms` are not decoded (no speech there); a recording that is empty,
    all silence, unreadable or holds NaNs comes back with `error` set. Results come in completion order.
    """
    window = window_seconds(model)
    pending = iter(recordings)
    active: list[_Job] = []
    exhausted = False
    while active or not exhausted:
        while len(active) < batch_size and not exhausted:
            recording = next(pending, None)
            if recording is None:
                exhausted = True
            elif recording.num_samples == 0 or recording.duration <= 0:
                yield LongFormResult(recording.id, [], "empty: no samples")
            else:
                active.append(_Job(recording))
        if not active:
            break
        to_decode, audios, finished = [], [], []
        for job in active:
            try:
                audio = read_window(job.recording, job.offset, window)
            except AudioError as error:
                finished.append(job)
                yield LongFormResult(job.recording.id, [], str(error))
                continue
            if audio.size < 0.05 * SAMPLE_RATE:  # nothing (or a few ms) left
                job.offset = job.recording.duration
            elif float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) < silence_rms:
                job.offset += audio.size / SAMPLE_RATE
            else:
                to_decode.append(job)
                audios.append(audio)
        results = transcribe_windows(model, processor, audios, settings, timestamps=True)
        for job, result in zip(to_decode, results, strict=True):
            job.segments += [Segment(job.offset + s.start, job.offset + s.end, s.text) for s in result.segments]
            job.decoded_seconds += min(window, job.recording.duration - job.offset)
            job.offset += result.next_offset if result.next_offset > 0 else window
        for job in active:
            if job in finished or job.offset < job.recording.duration - 0.05:
                continue
            finished.append(job)
            error = None if job.decoded_seconds > 0 else f"all silence (RMS below {silence_rms:g} everywhere)"
            yield LongFormResult(job.recording.id, job.segments, error, job.decoded_seconds)
        active = [job for job in active if job not in finished]
