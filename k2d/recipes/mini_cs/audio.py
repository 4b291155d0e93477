"""Hard stretches for long-form audio: noise, music-like tones, and mixing at a signal-to-noise ratio."""

from __future__ import annotations

import numpy as np

from k2d.audio import SAMPLE_RATE


def seconds_to_samples(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE))


def white_noise(rng: np.random.Generator, num_samples: int, level: float) -> np.ndarray:
    return (rng.standard_normal(num_samples) * level).astype(np.float32)


def brown_noise(rng: np.random.Generator, num_samples: int, level: float) -> np.ndarray:
    """Low-frequency rumble (integrated white noise), scaled to RMS `level`."""
    steps = rng.standard_normal(num_samples)
    walk = np.cumsum(steps)
    walk -= np.convolve(walk, np.ones(801) / 801, mode="same")  # remove drift
    rms = np.sqrt(np.mean(walk**2)) or 1.0
    return (walk / rms * level).astype(np.float32)


def tones(rng: np.random.Generator, num_samples: int, level: float) -> np.ndarray:
    """Music-like audio: chords of two or three sine notes that change every 0.25-0.6 s."""
    out = np.zeros(num_samples, dtype=np.float32)
    pos = 0
    while pos < out.size:
        length = min(out.size - pos, int(rng.uniform(0.25, 0.6) * SAMPLE_RATE))
        t = np.arange(length) / SAMPLE_RATE
        root = 220.0 * 2 ** (rng.integers(0, 24) / 12)
        note = sum(np.sin(2 * np.pi * root * ratio * t) for ratio in rng.choice([1.0, 1.25, 1.5, 2.0], 3))
        envelope = np.minimum(1.0, np.minimum(t, t[::-1]) * 40)  # 25 ms fade in and out
        out[pos : pos + length] = note * envelope
        pos += length
    peak = np.max(np.abs(out)) or 1.0
    return out / peak * level


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add `noise` (same length) to `speech` so that 10*log10(P_speech / P_noise) = snr_db."""
    noise_rms = rms(noise)
    if noise_rms == 0.0:
        return speech
    gain = rms(speech) / (noise_rms * 10 ** (snr_db / 20))
    return (speech + gain * noise).astype(np.float32)


def hard_stretch(rng: np.random.Generator, kind: str) -> np.ndarray:
    """One stretch that is hard for a recogniser: long silence, noise, or tones (music)."""
    if kind == "silence":
        return np.zeros(seconds_to_samples(rng.uniform(3.0, 8.0)), dtype=np.float32)
    if kind == "noise":
        num_samples = seconds_to_samples(rng.uniform(2.0, 5.0))
        if rng.random() < 0.5:
            return white_noise(rng, num_samples, rng.uniform(0.02, 0.08))
        return brown_noise(rng, num_samples, rng.uniform(0.05, 0.15))
    if kind == "tones":
        return tones(rng, seconds_to_samples(rng.uniform(3.0, 8.0)), rng.uniform(0.1, 0.4))
    raise ValueError(f"unknown hard stretch kind {kind!r}")
