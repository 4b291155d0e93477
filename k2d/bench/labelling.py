"""Stage 1 and 3 throughput (k2d's backends beside faster-whisper and transformers' pipeline) and stage 1
with and without VAD (hallucinations, label MER)."""

from __future__ import annotations

import functools
import logging
import statistics
import time
from pathlib import Path

from k2d.audio import SAMPLE_RATE
from k2d.inference.backends import load_recognizer
from k2d.inference.settings import GenerationSettings
from k2d.metrics.scoring import score_texts
from k2d.models.whisper import resolve_device
from k2d.speed import (
    decode_chunks,
    hardware,
    spread_audio,
    timed,
)

log = logging.getLogger("k2d.bench")


def truth_by_recording(supervisions_path: str | None, recordings: list) -> dict[str, str]:
    """The true text of each (possibly truncated) recording: the utterances that end inside it."""
    if not supervisions_path:
        return {}
    from lhotse import SupervisionSet

    from k2d.text.script import join_texts

    ends = {r.id: r.duration for r in recordings}
    kept = sorted((s for s in SupervisionSet.from_file(supervisions_path) if s.recording_id in ends
                   and s.end <= ends[s.recording_id] + 1e-3), key=lambda s: (s.recording_id, s.start))
    grouped: dict[str, list[str]] = {}
    for sup in kept:
        grouped.setdefault(sup.recording_id, []).append(sup.text or "")
    return {key: join_texts(texts) for key, texts in grouped.items()}


def reference_speech(supervisions_path) -> dict[str, list[tuple[float, float]]]:
    """Each recording's reference utterances as sorted (start, end) spans (where speech is)."""
    from k2d.filtering import load_truth

    return {key: sorted((s.start, s.end) for s in sups) for key, sups in load_truth(Path(supervisions_path)).items()}


def label_quality(references: dict[str, str], speech: dict[str, list], labels: dict[str, list]) -> str:
    """A labeller's output against the truth: MER (S / D / I), segments over non-speech, loop events."""
    from k2d.metrics.hallucination import HallucinationCounts, hallucinations
    from k2d.text.script import join_texts

    if not references:
        return "- | - | -"
    mer = score_texts(references, {key: join_texts([t for *_, t in segments]) for key, segments in labels.items()}
                      )[0].mer
    counts = sum((hallucinations(segments, speech.get(key, [])) for key, segments in labels.items()),
                 HallucinationCounts())
    return (f"{100 * mer.rate:.2f}% ({mer.substitutions} / {mer.deletions} / {mer.insertions}) | "
            f"{counts.over_non_speech} of {counts.segments} | {counts.loop_events}")


def bench_throughput(teacher: str, validator: str, recordings_path: str, cuts_path: str, seconds: float, batch: int,
                     device: str, settings: GenerationSettings | None = None, supervisions_path: str | None = None,
                     compute_type: str = "auto", external: bool = True, ctranslate2_only: bool = False,
                     labels_dir: Path | None = None) -> str:
    """Stage 1 (long-form labelling) and stage 3 (chunks) throughput, batch 1 vs batched, for both of k2d's
    backends and both stage-1 modes, beside faster-whisper (sequential and batched) and transformers' chunked
    pipeline on the same model and audio; with the true supervisions, the quality of each labeller's output.
    `ctranslate2_only`: the rows a CTranslate2 compute type changes (k2d's ctranslate2 backend, faster-whisper).
    `labels_dir`: each stage-1 row's labels as a supervisions manifest beside the (truncated) recordings', for
    stages 2-4 (what the filter keeps of each labeller's labels)."""
    from lhotse import CutSet, RecordingSet

    from k2d import labellers
    from k2d.audio import load_cut_audio

    recordings = spread_audio(RecordingSet.from_file(recordings_path), seconds, batch)
    audio_seconds = sum(r.duration for r in recordings)
    settings = settings or GenerationSettings()
    references = truth_by_recording(supervisions_path, recordings)
    speech = reference_speech(supervisions_path) if supervisions_path else {}
    dev = str(resolve_device(device))
    rows = []
    if labels_dir:
        labels_dir.mkdir(parents=True, exist_ok=True)
        RecordingSet.from_recordings(recordings).to_file(labels_dir / "recordings.jsonl.gz")

    def row(name, b, fn, base_seconds, optional=False):
        labels = {}

        def run():
            labels.update(fn())

        try:
            elapsed = statistics.mean(timed(run, 1))
        except Exception as error:  # an outside labeller that cannot run this model: said in the table
            if not optional:
                raise
            rows.append((name, b, None, f"cannot run: {str(error).splitlines()[0][:100]} | - | -"))
            log.warning("%s cannot run this model: %s", name, error)
            return
        rows.append((name, b, base_seconds / elapsed, label_quality(references, speech, labels) if labels
                     else "- | - | -"))
        if labels_dir and labels:
            write_labels(labels, labels_dir / f"{slug(name)}_b{b}.jsonl.gz")
        log.info("%s, batch %d: %.1f audio s/s", name, b, rows[-1][2])

    backends = ("ctranslate2",) if ctranslate2_only else ("transformers", "ctranslate2")
    recognizers = {backend: load_recognizer(teacher, device=dev, backend=backend, compute_type=compute_type)
                   for backend in backends}
    window = recognizers["ctranslate2"].window
    for backend, recognizer in recognizers.items():
        for b in (1, batch):  # one recording at a time, then `batch` recordings side by side
            row(f"stage 1, k2d sequential ({backend})", b,
                functools.partial(labellers.k2d_labels, recognizer, recordings, settings, b), audio_seconds)
    # stage 1's `vad: true`: no window without speech reaches the teacher (fewer hallucinations, less work)
    row("stage 1, k2d sequential (ctranslate2) + Silero VAD", batch, functools.partial(
        labellers.k2d_labels, recognizers["ctranslate2"], recordings, settings, batch, vad=True), audio_seconds)
    for b in (batch, 2 * batch):  # stage 1's `mode: batched`: `b` VAD windows per batch
        row("stage 1, k2d batched (ctranslate2, VAD windows)", b, functools.partial(
            labellers.k2d_labels, recognizers["ctranslate2"], recordings, settings, b, mode="batched"), audio_seconds)
    if external:
        ct2_dir, ct2_type = str(recognizers["ctranslate2"].model_dir), recognizers["ctranslate2"].model.compute_type
        row("faster-whisper transcribe (sequential)", 1, functools.partial(
            labellers.faster_whisper_labels, ct2_dir, recordings, settings, dev.split(":")[0], ct2_type), audio_seconds,
            optional=True)
        row("faster-whisper BatchedInferencePipeline (VAD chunks)", batch, functools.partial(
            labellers.faster_whisper_labels, ct2_dir, recordings, settings, dev.split(":")[0], ct2_type, batch),
            audio_seconds, optional=True)
        if not ctranslate2_only:
            row("transformers pipeline (chunked)", batch, functools.partial(
                labellers.pipeline_labels, teacher, recordings, settings, window, dev, batch), audio_seconds,
                optional=True)
    cuts = CutSet.from_file(cuts_path).subset(first=32)
    audios = [load_cut_audio(c) for c in cuts]
    cut_seconds = sum(a.size for a in audios) / SAMPLE_RATE
    for backend in backends:
        v_recognizer = load_recognizer(validator, device=dev, backend=backend, compute_type=compute_type)
        for b in (1, batch):
            row(f"stage 3, validator on chunks ({backend})", b,
                functools.partial(_decode_chunks_silently, v_recognizer, audios, settings, b), cut_seconds)
    lines = [f"{hardware()}; {teacher}; stage 1 on {audio_seconds:.0f} s of long-form audio from {len(recordings)} "
             f"recordings, stage 3 on {len(audios)} chunks ({cut_seconds:.0f} s) of {validator}; greedy, "
             f"timestamps {'on' if settings.timestamps else 'off'}, language {settings.language}; ctranslate2 "
             f"compute type {recognizers['ctranslate2'].model.compute_type}; one timed run after a warm-up; over "
             "non-speech: segments less than a quarter of whose time is reference speech"
             + (f"; faster-whisper with its feature padding set to the model's {window:g} s window (it pads to 30 s)"
                if external and window != 30.0 else ""), "",
             f"| work | batch | audio seconds per second | vs {rows[0][0].removeprefix('stage 1, ')}, batch 1 "
             "| label MER (S / D / I) "
             "| segments over non-speech | loop events |",
             "|---|---|---|---|---|---|---|"]
    stage1_base, stage3_base = rows[0][2], next(r[2] for r in rows if r[0].startswith("stage 3"))
    for name, b, rate, quality in rows:
        if rate is None:
            lines.append(f"| {name} | {b} | - | - | {quality} |")
            continue
        base = stage3_base if name.startswith("stage 3") else stage1_base
        lines.append(f"| {name} | {b} | {rate:.1f} | {rate / base:.2f}x | {quality} |")
    return "\n".join(lines)


def slug(name: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def write_labels(labels: dict[str, list], path: Path) -> None:
    """A labeller's segments as stage 1 writes them (one lhotse supervision per segment)."""
    from lhotse import SupervisionSegment, SupervisionSet

    SupervisionSet.from_segments(
        SupervisionSegment(f"{key}-pl{n:05d}", key, round(start, 3), round(max(end - start, 0.0), 3), channel=0,
                           text=text)
        for key, segments in labels.items() for n, (start, end, text) in enumerate(segments) if end > start
    ).to_file(path)


def bench_vad(teacher: str, config_path: Path, recordings_path: str, supervisions_path: str, device: str) -> str:
    """Stage 1 as configured, once without and once with `vad`, on the same recordings: speed, audio the
    model never saw, hallucinations (k2d.metrics.hallucination) and the label MER."""
    from lhotse import RecordingSet

    from k2d.audio import read_window
    from k2d.config import build_config, load_yaml
    from k2d.inference.backends import recognizer_for
    from k2d.inference.transcribe import decode_windows, joined_text, transcribe_longform
    from k2d.metrics.hallucination import MIN_SPEECH, HallucinationCounts, hallucinations
    from k2d.pseudo_label import PseudoLabelConfig

    config = build_config(PseudoLabelConfig, load_yaml(config_path), str(config_path))
    recordings = list(RecordingSet.from_file(recordings_path))
    audio_seconds = sum(r.duration for r in recordings)
    references = truth_by_recording(supervisions_path, recordings)
    speech = reference_speech(supervisions_path)
    recognizer = recognizer_for(config, teacher, str(resolve_device(device)))
    list(decode_windows(recognizer, [read_window(recordings[0], 0.0, recognizer.window)], config, [None]))  # warm-up
    lines = [f"{hardware()}; {teacher}; stage 1 ({config_path}, backend {config.backend}, batch "
             f"{config.batch_size}) on {audio_seconds:.0f} s of long-form audio from {len(recordings)} recordings, "
             f"{sum(len(s) for s in speech.values())} reference utterances; over non-speech: a segment less than "
             f"{100 * MIN_SPEECH:.0f}% of whose time is reference speech", "",
             "| stage 1 | audio s/s | audio not decoded | windows | segments | over non-speech (segments / units) "
             "| loop events | label MER (S / D / I) |", "|---|---|---|---|---|---|---|---|"]
    for vad in (False, True):
        started = time.perf_counter()
        results = list(transcribe_longform(recognizer, recordings, config, config.batch_size, config.silence_rms, vad))
        elapsed = time.perf_counter() - started
        counts = sum((hallucinations([(s.start, s.end, s.text) for s in r.segments], speech.get(r.recording_id, []))
                      for r in results), HallucinationCounts())
        mer = score_texts(references, {r.recording_id: joined_text(r.segments) for r in results})[0].mer
        skipped = sum(r.skipped_seconds for r in results)
        lines.append(f"| {'with' if vad else 'without'} VAD | {audio_seconds / elapsed:.1f} | "
                     f"{skipped:.0f} s ({100 * skipped / audio_seconds:.0f}%) | {sum(r.windows for r in results)} | "
                     f"{counts.segments} | {counts.over_non_speech} / {counts.over_non_speech_units} | "
                     f"{counts.loop_events} | {100 * mer.rate:.2f}% ({mer.substitutions} / {mer.deletions} / "
                     f"{mer.insertions}) |")
        log.info("%s", lines[-1])
    return "\n".join(lines)


def _decode_chunks_silently(recognizer, audios, settings, batch_size) -> dict:
    decode_chunks(recognizer, audios, settings, batch_size)
    return {}


