"""Decoding speed, measured the same way by stage 7 (the results table) and the benchmarks: every model on
the same audio in one process, timed runs after a warm-up, real-time factor = decoding time / audio time."""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
import statistics
import time

import torch

from k2d.inference.backends import load_recognizer
from k2d.inference.settings import GenerationSettings
from k2d.inference.transcribe import transcribe_audios, transcribe_longform
from k2d.models.whisper import count_parameters

log = logging.getLogger(__name__)


def hardware() -> str:
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def select_audio(recordings, seconds: float) -> list:
    """The first recordings of a manifest, truncated so that they add up to about `seconds`."""
    chosen, total = [], 0.0
    for recording in recordings:
        if total >= seconds:
            break
        take = min(recording.duration, seconds - total)
        chosen.append(recording if take >= recording.duration else _truncated(recording, take))
        total += take
    return chosen


def spread_audio(recordings, seconds: float, count: int) -> list:
    """`count` recordings with `seconds / count` of audio each, so that a batch of `count` has work in every row."""
    share = seconds / count
    return [r if r.duration <= share else _truncated(r, share) for r in list(recordings)[:count]]


def _truncated(recording, seconds: float):
    from lhotse import Recording

    return Recording(recording.id, recording.sources, recording.sampling_rate,
                     int(seconds * recording.sampling_rate), seconds, recording.transforms)


def decode_all(recognizer, recordings, settings: GenerationSettings, batch_size: int) -> None:
    """Long-form decoding of every recording (what stage 1 and the RTF benchmark time)."""
    for _ in transcribe_longform(recognizer, recordings, settings, batch_size):
        pass


def decode_chunks(recognizer, audios: list, settings: GenerationSettings, batch_size: int) -> None:
    """Chunks decoded `batch_size` at a time (what stage 3 times)."""
    for _ in transcribe_audios(recognizer, audios, settings, batch_size):
        pass


def timed(fn, runs: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return times


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@contextlib.contextmanager
def encoder_clock(recognizer):
    """Seconds spent in the model's encoder while the block runs (a list of one, filled as it goes); None for a
    backend without a torch model. A student keeps its teacher's encoder, so this share of the teacher's decoding
    time is what no smaller decoder can take away."""
    model = getattr(recognizer, "model", None)
    if not isinstance(model, torch.nn.Module):
        yield None
        return
    encoder, spent, starts = model.get_encoder(), [0.0], []

    def before(*_):
        synchronize()
        starts.append(time.perf_counter())

    def after(*_):
        synchronize()
        spent[0] += time.perf_counter() - starts.pop()

    handles = [encoder.register_forward_pre_hook(before), encoder.register_forward_hook(after)]
    try:
        yield spent
    finally:
        for handle in handles:
            handle.remove()


def measure_rtf(models: dict[str, str], recordings: list, runs: int = 5, device: str = "cpu", dtype: str = "float32",
                batch_size: int = 8, settings: GenerationSettings | None = None) -> list[dict]:
    """Long-form decoding time / audio time for each model on the same recordings."""
    settings = settings or GenerationSettings()
    audio_seconds = sum(r.duration for r in recordings)
    rows = []
    for name, path in models.items():
        recognizer = load_recognizer(path, device=device, dtype=dtype)
        decode = functools.partial(decode_all, recognizer, recordings, settings, batch_size)
        decode()  # the warm-up, outside the encoder clock
        with encoder_clock(recognizer) as encoder_seconds:
            times = timed(decode, runs, warmup=0)
        rows.append({
            "model": name, "parameters": count_parameters(recognizer.model),
            "rtf": statistics.mean(times) / audio_seconds,
            "rtf_std": statistics.pstdev(times) / audio_seconds, "runs": runs, "audio_seconds": round(audio_seconds, 1),
            "encoder_share": None if encoder_seconds is None else encoder_seconds[0] / sum(times),
        })
        log.info("%s: RTF %.4f (+- %.4f) over %d runs", name, rows[-1]["rtf"], rows[-1]["rtf_std"], runs)
    return rows


def rtf_table(rows: list[dict], reference: str | None = None) -> str:
    reference_rtf = next((r["rtf"] for r in rows if r["model"] == reference), rows[0]["rtf"])
    lines = ["| model | parameters | RTF | speed-up | encoder share |", "|---|---|---|---|---|"]
    for r in rows:
        share = r.get("encoder_share")
        lines.append(f"| {r['model']} | {r['parameters'] / 1e6:.2f}M | {r['rtf']:.4f} ± {r['rtf_std']:.4f} | "
                     f"{reference_rtf / r['rtf']:.2f}x | {'-' if share is None else f'{100 * share:.0f}%'} |")
    return "\n".join(lines)
