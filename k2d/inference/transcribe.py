"""Transcription on any recognizer: windows (short-form), and whole recordings window by window (long-form,
sequential, batched across recordings), with openai's rules for what a decoded window means.

For each window: decode once at temperature 0; with `temperature_fallback`, decode again at 0.2, 0.4, ...
while the text repeats itself (compression ratio) or the model is unsure (mean log-probability), unless
the window is probably silence; skip the window when the no-speech rule says so. Long-form: when the
window ends inside a segment, the next window starts at the end of the last complete segment, otherwise
right after the window. Each active recording contributes one window to every batch, and audio is read
window by window, so hours-long files are never loaded whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from k2d.audio import SAMPLE_RATE, AudioError, read_window, rms
from k2d.inference.recognizer import Hypothesis
from k2d.inference.rules import is_no_speech, needs_fallback
from k2d.inference.settings import GenerationSettings
from k2d.inference.windows import Segment, plain_text, split_segments
from k2d.text.script import join_texts

log = logging.getLogger(__name__)


@dataclass
class WindowResult:
    text: str  # all text tokens (short-form), or the joined complete segments (long-form)
    segments: list[Segment]  # times relative to the window
    seek: float | None  # long-form: where the next window starts, relative to this one; None = window end
    hypothesis: Hypothesis
    temperature: float
    no_speech: bool = False  # skipped by the no-speech rule: no text

    @property
    def tokens(self) -> list[int]:
        return self.hypothesis.tokens


def decode_windows(recognizer, audios: list[np.ndarray], settings: GenerationSettings,
                   prompts: list[list[int] | None] | None = None, keep_unfinished: bool = False
                   ) -> list[WindowResult]:
    """Decode each audio (at most one window long) once, with temperature fallback when asked for;
    `keep_unfinished`: a window's unfinished last segment is kept (k2d.inference.windows)."""
    if not audios:
        return []
    prompts = prompts or [None] * len(audios)
    prefixes = [recognizer.prefix(settings, prompt) for prompt in prompts]
    encoded = recognizer.encode(audios)
    chosen: list[tuple[Hypothesis, float] | None] = [None] * len(audios)
    todo = list(range(len(audios)))
    for temperature in settings.temperatures:
        rows = encoded if len(todo) == len(audios) else recognizer.select(encoded, todo)
        hypotheses = recognizer.generate(
            rows, [prefixes[i] for i in todo], temperature, settings.num_beams, settings.max_new_tokens,
            settings.timestamps,
        )
        retry = []
        for i, hypothesis in zip(todo, hypotheses, strict=True):
            chosen[i] = (hypothesis, temperature)
            text = plain_text(hypothesis.tokens, recognizer.specials, recognizer.decode_text)
            if needs_fallback(text, hypothesis.avg_logprob, hypothesis.no_speech_prob, settings):
                retry.append(i)
        todo = retry
        if not todo:
            break
    results = []
    for (hypothesis, temperature), audio in zip(chosen, audios, strict=True):
        if is_no_speech(hypothesis.avg_logprob, hypothesis.no_speech_prob, settings):
            results.append(WindowResult("", [], None, hypothesis, temperature, no_speech=True))
            continue
        text = plain_text(hypothesis.tokens, recognizer.specials, recognizer.decode_text)
        segments, seek = [], None
        if settings.timestamps:
            segments, seek = split_segments(hypothesis.tokens, recognizer.specials, recognizer.decode_text,
                                            audio.size / SAMPLE_RATE, keep_unfinished)
        results.append(WindowResult(text, segments, seek, hypothesis, temperature))
    return results


def transcribe_audios(recognizer, audios: Iterable[np.ndarray], settings: GenerationSettings,
                      batch_size: int = 16) -> Iterator[WindowResult]:
    """Short-form: each audio (at most one window) on its own, `batch_size` at a time, in order."""
    batch: list[np.ndarray] = []
    for audio in audios:
        batch.append(audio)
        if len(batch) == batch_size:
            yield from decode_windows(recognizer, batch, settings)
            batch = []
    yield from decode_windows(recognizer, batch, settings)


@dataclass
class LongFormResult:
    recording_id: str
    segments: list[Segment]
    error: str | None = None  # why the recording was skipped
    decoded_seconds: float = 0.0  # audio that went through the model (silent windows are skipped)
    skipped_seconds: float = 0.0  # audio skipped as silence (RMS) or by the no-speech rule
    windows: int = 0
    fallbacks: int = 0  # windows decoded again at a higher temperature


@dataclass(eq=False)  # jobs are compared by identity
class _Job:
    recording: object
    offset: float = 0.0
    result: LongFormResult = None
    prompt_from: int = 0  # segments[prompt_from:] make the previous-text prompt (reset after a hot fallback)

    def prompt(self, enabled: bool) -> list[int] | None:
        if not enabled:
            return None
        return [t for s in self.result.segments[self.prompt_from:] for t in s.tokens] or None


def transcribe_longform(recognizer, recordings, settings: GenerationSettings, batch_size: int = 8,
                        silence_rms: float = 1e-4, vad: bool = False) -> Iterator[LongFormResult]:
    """Yield a LongFormResult per recording, decoding up to `batch_size` recordings side by side.

    Windows quieter than `silence_rms` are not decoded (no speech there); with `vad`, neither are windows in
    which voice activity detection finds no speech, and a window whose speech starts late begins there. A
    recording that is empty, all silence, unreadable or holds NaNs comes back with `error` set. Results
    come in completion order.
    """
    window = recognizer.window
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
                active.append(_Job(recording, result=LongFormResult(recording.id, [])))
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
            elif rms(audio) < silence_rms:
                job.offset += audio.size / SAMPLE_RATE
                job.result.skipped_seconds += audio.size / SAMPLE_RATE
            elif vad and (lead := leading_non_speech(audio)) > 0:
                job.offset += lead  # the next round reads the window from the speech on
                job.result.skipped_seconds += lead
            else:
                to_decode.append(job)
                audios.append(audio)
        prompts = [job.prompt(settings.condition_on_previous_text) for job in to_decode]
        for job, audio, window_result in zip(to_decode, audios, decode_windows(recognizer, audios, settings, prompts),
                                             strict=True):
            advance(job, window_result, audio.size / SAMPLE_RATE)
        for job in active:
            if job in finished or job.offset < job.recording.duration - 0.05:
                continue
            finished.append(job)
            if job.result.decoded_seconds == 0 and job.result.windows == 0:
                job.result.error = f"all silence (RMS below {silence_rms:g} everywhere)"
            yield job.result
        active = [job for job in active if job not in finished]


# A window whose speech starts later than this is moved to start at the speech (less padding).
VAD_LATE_START = 1.0


def leading_non_speech(audio: np.ndarray) -> float:
    """Seconds at the start of a window with no speech: all of it when the detector finds none, the time to
    the first speech when that comes later than VAD_LATE_START, else 0 (decode the window as it is)."""
    from k2d.inference.vad import speech_spans

    spans = speech_spans(audio)
    if not spans:
        return audio.size / SAMPLE_RATE
    return spans[0][0] if spans[0][0] > VAD_LATE_START else 0.0


def advance(job: _Job, window: WindowResult, audio_seconds: float) -> None:
    """Add a decoded window's segments to its recording and move the recording's offset on."""
    result = job.result
    result.windows += 1
    result.fallbacks += window.temperature > 0
    if window.no_speech:
        result.skipped_seconds += audio_seconds
        job.offset += audio_seconds
        return
    hypothesis = window.hypothesis
    result.segments += [Segment(job.offset + s.start, job.offset + s.end, s.text, s.tokens, hypothesis.avg_logprob,
                                hypothesis.no_speech_prob) for s in window.segments]
    used = window.seek if window.seek is not None and window.seek > 0 else audio_seconds
    result.decoded_seconds += used
    if window.temperature > 0.5:  # openai: a hot fallback makes the text so far a poor prompt
        job.prompt_from = len(result.segments)
    job.offset += used


def joined_text(segments: list[Segment]) -> str:
    return join_texts([s.text for s in segments])
