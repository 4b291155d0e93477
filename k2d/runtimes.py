"""One model through every runtime a user may ship it with, on the same utterances, one at a time (as on a
device): k2d itself (transformers), CTranslate2 through k2d, faster-whisper's own transcribe, and sherpa-onnx;
each with its size on disk, its real-time factor, its MER and how often its text is k2d's text.

    rows = measure_runtimes("exp/mini_cs/export", "exp/mini_cs", audios, references, language="zh")
    print(runtimes_table(rows))

The exports are made once beside the model (export_ct2_float32/, export_ct2_int8/, export_onnx/). faster-whisper
1.2.1 pads every window to 30 s (its transcribe calls `pad_or_trim` without a length), so a model whose window
is shorter is reported as not runnable there rather than decoded wrongly.
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from k2d.audio import SAMPLE_RATE, load_cut_audio
from k2d.export import export_ctranslate2
from k2d.export_onnx import DECODER, ENCODER, TOKENS, export_sherpa_onnx
from k2d.inference.backends import load_recognizer
from k2d.inference.settings import GenerationSettings
from k2d.inference.transcribe import transcribe_audios
from k2d.manifests import utterance_cuts
from k2d.metrics.scoring import score_texts
from k2d.models.names import resolve_model
from k2d.models.tokenizer import window_seconds
from k2d.onnx_files import int8_name

FASTER_WHISPER_WINDOW = 30.0  # seconds: faster-whisper 1.2.1's transcribe pads features to 3000 frames

Transcriber = Callable[[np.ndarray], str]


def model_window(model_dir: Path) -> float:
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return window_seconds(config["max_source_positions"])


def make_exports(model_dir: Path, exports_dir: Path, onnx_dir: Path | None = None) -> dict[str, Path]:
    """The CTranslate2 (float32, int8) and sherpa-onnx (float32 + int8) exports of `model_dir` under
    `exports_dir`, made if missing; `onnx_dir`: an existing sherpa-onnx export to use instead."""
    exports_dir = Path(exports_dir)
    ct2 = {q: exports_dir / f"export_ct2_{q}" for q in ("float32", "int8")}
    for quantization, directory in ct2.items():
        if not (directory / "model.bin").is_file():
            export_ctranslate2(model_dir, directory, quantization)
    onnx = Path(onnx_dir) if onnx_dir else exports_dir / "export_onnx"
    if not (onnx / int8_name(DECODER)).is_file():
        export_sherpa_onnx(model_dir, onnx, int8=True)
    return {"ctranslate2": ct2["float32"], "ctranslate2_int8": ct2["int8"], "onnx": onnx}


def short_utterances(recordings_path, supervisions_path, count: int,
                     window: float) -> tuple[list[np.ndarray], list[str]]:
    """The first `count` utterances of a test set that fit in one window: their audio and reference text."""
    cuts = [cut for cut in utterance_cuts(recordings_path, supervisions_path)
            if cut.duration <= window and cut.supervisions[0].text][:count]
    return [load_cut_audio(cut) for cut in cuts], [cut.supervisions[0].text for cut in cuts]


def files_mb(*paths: Path) -> float:
    return sum(p.stat().st_size for p in paths) / 1e6


def k2d_transcriber(model: Path, language: str, backend: str = "transformers",
                    compute_type: str = "auto") -> Transcriber:
    recognizer = load_recognizer(model, backend=backend, compute_type=compute_type)
    settings = GenerationSettings(language=language, timestamps=False, no_speech_threshold=None, backend=backend,
                                  compute_type=compute_type)
    return lambda audio: next(transcribe_audios(recognizer, [audio], settings, batch_size=1)).text


def sherpa_transcriber(onnx_dir: Path, language: str, int8: bool = False, threads: int = 1) -> Transcriber:
    import sherpa_onnx

    name = int8_name if int8 else (lambda n: n)
    recognizer = sherpa_onnx.OfflineRecognizer.from_whisper(
        encoder=str(onnx_dir / name(ENCODER)), decoder=str(onnx_dir / name(DECODER)), tokens=str(onnx_dir / TOKENS),
        language=language, num_threads=threads)

    def transcribe(audio: np.ndarray) -> str:
        stream = recognizer.create_stream()
        stream.accept_waveform(SAMPLE_RATE, audio.astype(np.float32))
        recognizer.decode_stream(stream)
        return stream.result.text

    return transcribe


def faster_whisper_transcriber(ct2_dir: Path, language: str, compute_type: str, threads: int) -> Transcriber:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(ct2_dir), device="cpu", compute_type=compute_type, cpu_threads=threads)

    def transcribe(audio: np.ndarray) -> str:
        segments, _ = model.transcribe(audio.astype(np.float32), language=language, beam_size=1, temperature=0.0,
                                       without_timestamps=True, condition_on_previous_text=False)
        return "".join(segment.text for segment in segments).strip()

    return transcribe


def runtimes(model_dir: Path, exports: dict[str, Path], language: str, threads: int) -> dict:
    """Each runtime's name -> (its files' size in MB, a function making its transcriber, or why it cannot run)."""
    model_dir, onnx = Path(model_dir), exports["onnx"]
    ct2, ct2_int8 = exports["ctranslate2"], exports["ctranslate2_int8"]
    window = model_window(model_dir)
    faster = (functools.partial(faster_whisper_transcriber, ct2, language, "float32", threads)
              if window == FASTER_WHISPER_WINDOW else
              f"faster-whisper pads every window to {FASTER_WHISPER_WINDOW:g} s; this model's window is {window:g} s")
    return {
        "k2d": (files_mb(model_dir / "model.safetensors"), functools.partial(k2d_transcriber, model_dir, language)),
        "ctranslate2": (files_mb(ct2 / "model.bin"),
                        functools.partial(k2d_transcriber, model_dir, language, "ctranslate2", "float32")),
        "ctranslate2_int8": (files_mb(ct2_int8 / "model.bin"),
                             functools.partial(k2d_transcriber, model_dir, language, "ctranslate2", "int8")),
        "faster_whisper": (files_mb(ct2 / "model.bin"), faster),
        "sherpa_onnx": (files_mb(onnx / ENCODER, onnx / DECODER),
                        functools.partial(sherpa_transcriber, onnx, language, False, threads)),
        "sherpa_onnx_int8": (files_mb(onnx / int8_name(ENCODER), onnx / int8_name(DECODER)),
                             functools.partial(sherpa_transcriber, onnx, language, True, threads)),
    }


def measure_runtimes(model_dir: Path, exports_dir: Path, audios: list[np.ndarray], references: list[str],
                     language: str = "zh", runs: int = 1, threads: int = 1, onnx_dir: Path | None = None) -> list[dict]:
    """Every runtime on the same utterances in this process: texts first (also the warm-up), then `runs` timed
    passes. The first runtime (k2d) is the reference of the same-text column."""
    model_dir = Path(resolve_model(str(model_dir)))
    exports = make_exports(model_dir, exports_dir, onnx_dir)
    audio_seconds = sum(a.size for a in audios) / SAMPLE_RATE
    ids = [str(i) for i in range(len(audios))]
    rows, reference_texts = [], None
    for name, (size, make) in runtimes(model_dir, exports, language, threads).items():
        if isinstance(make, str):
            rows.append({"runtime": name, "size_mb": size, "note": make})
            continue
        transcribe = make()
        texts = [transcribe(audio) for audio in audios]
        reference_texts = reference_texts or texts
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            for audio in audios:
                transcribe(audio)
            times.append(time.perf_counter() - started)
        rows.append({
            "runtime": name, "size_mb": size, "rtf": statistics.mean(times) / audio_seconds,
            "mer": score_texts(dict(zip(ids, references, strict=True)), dict(zip(ids, texts, strict=True)))[0].mer.rate,
            "same_text": sum(a == b for a, b in zip(texts, reference_texts, strict=True)) / len(texts),
            "texts": texts,
        })
    return rows


def runtimes_header(rows: list[dict], audios: list[np.ndarray], runs: int, threads: int) -> str:
    seconds = sum(a.size for a in audios) / SAMPLE_RATE
    return (f"{len(audios)} utterances ({seconds:.1f} s), each decoded on its own (greedy, no timestamps), "
            f"{runs} timed run(s) after the run that gave the texts, all runtimes in one process, {threads} "
            f"thread(s); size: the weights on disk; same text: utterances whose text is {rows[0]['runtime']}'s.")


def runtimes_table(rows: list[dict]) -> str:
    lines = ["| runtime | size (MB) | RTF | MER % | same text as k2d |", "|---|---|---|---|---|"]
    for r in rows:
        if "note" in r:
            lines.append(f"| {r['runtime']} | {r['size_mb']:.1f} | not run: {r['note']} | | |")
        else:
            lines.append(f"| {r['runtime']} | {r['size_mb']:.1f} | {r['rtf']:.4f} | {100 * r['mer']:.2f} | "
                         f"{100 * r['same_text']:.0f}% |")
    return "\n".join(lines)
