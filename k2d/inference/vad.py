"""Voice activity detection before decoding: windows without speech are not sent to the teacher, which is
where Whisper writes its stock hallucinations (over music, tones, noise and silence).

The detector is Silero VAD (v6), the ONNX model faster-whisper ships in its wheel (no download), run with
onnxruntime through faster-whisper's `get_speech_timestamps`.

    spans = speech_spans(audio)          # [(start, end)] in seconds
"""

from __future__ import annotations

import numpy as np

from k2d.audio import SAMPLE_RATE

PAD_MS = 200


def speech_spans(audio: np.ndarray, threshold: float = 0.5, min_silence_ms: int = 300, pad_ms: int = PAD_MS,
                 max_speech: float = float("inf")) -> list[tuple[float, float]]:
    """Speech regions of 16 kHz mono audio, in seconds, padded by `pad_ms` on each side; a region longer
    than `max_speech` seconds (before padding) is split, at a pause where there is one."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(threshold=threshold, min_silence_duration_ms=min_silence_ms, speech_pad_ms=pad_ms,
                         max_speech_duration_s=max_speech)
    found = get_speech_timestamps(audio.astype(np.float32), options, sampling_rate=SAMPLE_RATE)
    return [(span["start"] / SAMPLE_RATE, span["end"] / SAMPLE_RATE) for span in found]
