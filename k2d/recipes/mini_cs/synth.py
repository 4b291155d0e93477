"""Offline code-switched speech synthesis with espeak-ng.

espeak-ng's plain `cmn` voice speaks only the first Chinese character as Mandarin, and `cmn-latn-pinyin`
reads English letters as pinyin, so a sentence is split into script runs: Chinese runs are spoken by
`cmn-latn-pinyin`, Latin runs by an English voice, and the pieces are joined with short gaps.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

from k2d.recipes.mini_cs.text import split_scripts

ESPEAK_RATE = 22050


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: espeak-ng voices for each script, words per minute and pitch (0-99)."""

    speaker_id: str
    zh_voice: str
    en_voice: str
    speed: int
    pitch: int


def espeak_binary() -> str:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError("espeak-ng is not installed: run ./install.sh (it installs espeak-ng and sox)")
    return binary


def _parse_espeak_wav(data: bytes, text: str) -> np.ndarray:
    # To a pipe, espeak-ng writes a 44-byte RIFF header whose length fields it cannot fill in: read past it.
    if len(data) < 44 or data[:4] != b"RIFF" or data[36:40] != b"data":
        raise RuntimeError(f"espeak-ng returned no audio for {text!r}")
    return np.frombuffer(data[44:], dtype="<i2").astype(np.float32) / 32768.0


def trim_silence(samples: np.ndarray, threshold: float = 1e-3, margin: int = 80) -> np.ndarray:
    """Cut leading and trailing samples below `threshold` (absolute), keeping `margin` samples of edge."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if loud.size == 0:
        return samples[:0]
    return samples[max(0, loud[0] - margin) : loud[-1] + 1 + margin]


def speak_run(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """One espeak-ng call: `text` in `voice`, trimmed, at espeak's native 22,050 Hz."""
    cmd = [espeak_binary(), "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text]
    result = subprocess.run(cmd, capture_output=True, check=True)
    return trim_silence(_parse_espeak_wav(result.stdout, text))


def synthesize(text: str, speaker: Speaker, gap_seconds: float = 0.06) -> np.ndarray:
    """Speak a code-switched sentence; returns float32 samples at 16 kHz with no edge silence."""
    pieces = []
    gap = np.zeros(int(gap_seconds * ESPEAK_RATE), dtype=np.float32)
    for script, run in split_scripts(text):
        voice = speaker.zh_voice if script == "zh" else speaker.en_voice
        if pieces:
            pieces.append(gap)
        pieces.append(speak_run(run, voice, speaker.speed, speaker.pitch))
    if not pieces:
        raise ValueError(f"nothing to synthesize in {text!r}")
    audio = np.concatenate(pieces)
    # 16000 / 22050 = 320 / 441
    return resample_poly(audio, 320, 441).astype(np.float32)
