"""Audio as every stage sees it: mono float32 at 16 kHz, read from lhotse recordings and cuts.

The sample rate is defined here and nowhere else.
"""

from __future__ import annotations

import numpy as np
from lhotse.utils import fastcopy

SAMPLE_RATE = 16000
WHOLE_READ_TOLERANCE = 1e-3  # seconds: lhotse treats a request this close to a recording's duration as "all of it"


class AudioError(RuntimeError):
    """Audio that cannot be used; the message says why."""


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Channels averaged: lhotse gives (channels, samples) for multi-channel audio."""
    return (audio.mean(axis=0) if audio.ndim == 2 else audio).astype(np.float32)


def load_cut_audio(cut) -> np.ndarray:
    """The samples of a lhotse cut (or recording), mono 16 kHz."""
    if cut.sampling_rate != SAMPLE_RATE:
        cut = cut.resample(SAMPLE_RATE)
    return to_mono(cut.load_audio())


def labelled_cut(cut):
    """The part of a chunk cut its label covers: a continued chunk is cut back to the end of its last
    complete segment (the audio a student trains on and the validator must hear)."""
    from k2d.cuts import ChunkFields

    fields = ChunkFields.from_cut(cut)
    if fields is not None and fields.continued:
        return cut.truncate(duration=fields.complete_end, keep_excessive_supervisions=False)
    return cut


def read_window(recording, offset: float, duration: float) -> np.ndarray:
    """Mono 16 kHz float32 samples of [offset, offset + duration) of a lhotse Recording, read from disk
    without loading the rest of the file. Several channels are averaged; other rates are resampled."""
    if recording.sampling_rate != SAMPLE_RATE:
        recording = recording.resample(SAMPLE_RATE)
    duration = min(duration, recording.duration - offset)
    if duration <= 0:
        return np.zeros(0, dtype=np.float32)
    if offset == 0 and duration >= recording.duration - WHOLE_READ_TOLERANCE:
        # lhotse reads the whole *file* when asked for the whole declared recording, and then rejects a
        # recording declared shorter than its file (a manifest truncated on purpose): ask past the declared end
        recording = fastcopy(recording, duration=recording.duration + 1.0,
                             num_samples=recording.num_samples + recording.sampling_rate)
    try:
        audio = recording.load_audio(offset=offset, duration=duration)
    except Exception as error:  # lhotse raises many kinds; the stage reports the file and goes on
        raise AudioError(f"unreadable at {offset:.1f} s: {type(error).__name__}: {error}") from None
    audio = to_mono(audio)
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"NaN or infinite samples in {offset:.1f}-{offset + duration:.1f} s")
    return audio


def read_whole(recording, piece_seconds: float = 30.0) -> np.ndarray:
    """All of a recording, read window by window (a recording truncated in its manifest stays truncated)."""
    pieces, offset = [], 0.0
    while offset < recording.duration - 1e-6:
        pieces.append(read_window(recording, offset, piece_seconds))
        offset += piece_seconds
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) if audio.size else 0.0
