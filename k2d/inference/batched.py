"""Batched long-form transcription, stage 1's `mode: batched` (the idea of faster-whisper's
BatchedInferencePipeline, on k2d's decoding rules): voice activity detection finds a recording's speech
regions, consecutive regions are merged into windows of at most the model's window, and the windows are
decoded independently, `batch_size` at a time across recordings, without previous text.

A window starts where a speech region starts and ends where one ends, so nothing waits for the previous
window's seek, silence is never decoded, and a window's unfinished last segment is kept (it ends at the
window's end) instead of being decoded again. The sequential mode (k2d.inference.transcribe) is openai's
and the paper's algorithm.

    speech_windows([(0.2, 3.1), (4.0, 8.5), (12.0, 30.0)], window=10.0)
    # [(0.2, 8.5), (12.0, 21.0), (21.0, 30.0)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from k2d.audio import AudioError, read_window
from k2d.inference.settings import GenerationSettings
from k2d.inference.transcribe import LongFormResult, decode_windows, transcribe_longform
from k2d.inference.vad import PAD_MS, speech_spans
from k2d.inference.windows import Segment

MODES = ("sequential", "batched")  # stage 1's long-form modes
VAD_BLOCK = 600.0  # seconds given to the detector at once: hours-long files are never loaded whole
EPSILON = 1e-6


def speech_windows(spans: list[tuple[float, float]], window: float) -> list[tuple[float, float]]:
    """Windows of at most `window` seconds that cover every speech span exactly once, in time order.

    Consecutive spans join one window while it stays within `window`; a span longer than `window` is cut
    into equal pieces. Overlapping or touching spans are one span."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    windows: list[tuple[float, float]] = []
    for start, end in merged:
        if windows and end - windows[-1][0] <= window + EPSILON:
            windows[-1] = (windows[-1][0], end)
            continue
        pieces = math.ceil((end - start) / window - EPSILON)
        step = (end - start) / pieces
        windows += [(start + i * step, end if i == pieces - 1 else start + (i + 1) * step) for i in range(pieces)]
    return windows


def recording_speech_spans(recording, window: float, block: float = VAD_BLOCK) -> list[tuple[float, float]]:
    """A recording's speech regions (padded), read `block` seconds at a time; a region the block boundary
    cut in two is one region again. Regions are split (at pauses where possible) to fit `window`."""
    spans: list[tuple[float, float]] = []
    offset = 0.0
    while offset < recording.duration:
        audio = read_window(recording, offset, block)
        if audio.size == 0:
            break
        for start, end in speech_spans(audio, max_speech=window - 2 * PAD_MS / 1000):
            start, end = offset + start, offset + end
            if spans and abs(spans[-1][1] - offset) < 0.01 and abs(start - offset) < 0.01:
                start = spans.pop()[0]
            spans.append((start, min(end, recording.duration)))
        offset += block
    return spans


def vad_windows(recording, window: float) -> list[tuple[float, float]]:
    """The batched mode's windows of a recording: its speech regions, merged."""
    return speech_windows(recording_speech_spans(recording, window), window)


def transcribe_recordings(recognizer, recordings, settings: GenerationSettings, mode: str, batch_size: int,
                          silence_rms: float = 1e-4, vad: bool = False) -> Iterator[LongFormResult]:
    """Long-form results of every recording in either of MODES (stage 1's `mode`); `silence_rms` and `vad`
    are the sequential mode's (the batched one always finds speech with VAD)."""
    if mode == "batched":
        return transcribe_batched(recognizer, recordings, settings, batch_size)
    return transcribe_longform(recognizer, recordings, settings, batch_size, silence_rms, vad)


@dataclass(eq=False)  # compared by identity
class _Job:
    recording: object
    result: LongFormResult
    left: int  # windows not decoded yet


def transcribe_batched(recognizer, recordings, settings: GenerationSettings, batch_size: int = 16,
                       windows_of: Callable[[object, float], list[tuple[float, float]]] = vad_windows
                       ) -> Iterator[LongFormResult]:
    """Yield a LongFormResult per recording (in completion order), its windows (`windows_of(recording,
    model window)`, each at most one model window long) decoded `batch_size` at a time with windows of
    other recordings. Empty and unreadable recordings, and recordings without speech, come back with
    `error` set."""
    queue: list[tuple[_Job, float, float]] = []
    for recording in recordings:
        if recording.num_samples == 0 or recording.duration <= 0:
            yield LongFormResult(recording.id, [], "empty: no samples")
            continue
        try:
            windows = windows_of(recording, recognizer.window)
        except AudioError as error:
            yield LongFormResult(recording.id, [], str(error))
            continue
        if not windows:
            yield LongFormResult(recording.id, [], "no speech found (voice activity detection)",
                                 skipped_seconds=recording.duration)
            continue
        speech = sum(end - start for start, end in windows)
        job = _Job(recording, LongFormResult(recording.id, [], skipped_seconds=recording.duration - speech),
                   len(windows))
        queue += [(job, start, end) for start, end in windows]
        while len(queue) >= batch_size:
            yield from _decode(recognizer, queue[:batch_size], settings)
            del queue[:batch_size]
    if queue:
        yield from _decode(recognizer, queue, settings)


def _decode(recognizer, batch: list[tuple[_Job, float, float]], settings) -> Iterator[LongFormResult]:
    """Decode one batch of windows, add each one's segments to its recording, yield the recordings done."""
    readable, audios = [], []
    for job, start, end in batch:
        if job.result.error is None:
            try:
                audios.append(read_window(job.recording, start, end - start))
                readable.append((job, start, end))
                continue
            except AudioError as error:
                job.result.error, job.result.segments = str(error), []
        job.left -= 1
    for (job, start, end), window in zip(readable, decode_windows(recognizer, audios, settings,
                                                                   keep_unfinished=True), strict=True):
        result = job.result
        job.left -= 1
        if result.error is not None:  # a later window of it could not be read: the recording is redone
            continue
        result.windows += 1
        result.fallbacks += window.temperature > 0
        if window.no_speech:
            result.skipped_seconds += end - start
            continue
        result.decoded_seconds += end - start
        result.segments += [Segment(start + s.start, start + s.end, s.text, s.tokens, window.hypothesis.avg_logprob,
                                    window.hypothesis.no_speech_prob) for s in window.segments]
    yield from (job.result for job in dict.fromkeys(job for job, _, _ in batch if job.left == 0))
