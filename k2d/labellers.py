"""The long-form labellers stage 1 is measured against, on the same model and audio: k2d itself (each
backend), faster-whisper's sequential `transcribe` and its batched pipeline, and transformers' chunked ASR
pipeline. Each returns {recording id: [(start, end, text)]}, its timed segments; `python -m k2d.bench
throughput` times them side by side and scores their labels (a fast labeller that writes worse labels does not
win).
"""

from __future__ import annotations

import contextlib
import functools

from k2d.audio import SAMPLE_RATE, read_whole
from k2d.inference.batched import transcribe_recordings
from k2d.inference.settings import GenerationSettings

Segments = dict[str, list[tuple[float, float, str]]]


def k2d_labels(recognizer, recordings: list, settings: GenerationSettings, batch_size: int,
               vad: bool = False, mode: str = "sequential") -> Segments:
    """Stage 1's labeller in either mode (k2d.pseudo_label's `mode`)."""
    results = transcribe_recordings(recognizer, recordings, settings, mode, batch_size, vad=vad)
    return {r.recording_id: [(s.start, s.end, s.text) for s in r.segments] for r in results}


def _temperatures(settings: GenerationSettings):
    return list(settings.temperatures) if settings.temperature_fallback else 0.0


def faster_whisper_labels(ct2_dir: str, recordings: list, settings: GenerationSettings, device: str,
                          compute_type: str, batch_size: int = 0) -> Segments:
    """faster-whisper with k2d's decoding options; batch_size > 0: its BatchedInferencePipeline (which
    cuts the audio at voice-activity boundaries and decodes the pieces in batches, without previous text)."""
    from faster_whisper import WhisperModel

    model = WhisperModel(ct2_dir, device=device, compute_type=compute_type)
    options = dict(language=settings.language, task=settings.task, beam_size=settings.num_beams, best_of=1,
                   temperature=_temperatures(settings),
                   compression_ratio_threshold=settings.compression_ratio_threshold,
                   log_prob_threshold=settings.logprob_threshold, no_speech_threshold=settings.no_speech_threshold,
                   without_timestamps=not settings.timestamps, word_timestamps=False)
    texts = {}
    with window_padding(model.feature_extractor.nb_max_frames):
        for recording in recordings:
            texts[recording.id] = _faster_whisper_segments(model, read_whole(recording), settings, options,
                                                           batch_size)
    return texts


@contextlib.contextmanager
def window_padding(frames: int):
    """faster-whisper pads every window's features to 3,000 frames (30 s) whatever the model's window; a
    model with a shorter one (k2d's adapted 10 s teachers) needs them padded to its own `frames`."""
    import faster_whisper.transcribe as module

    original = module.pad_or_trim
    module.pad_or_trim = functools.partial(original, length=frames)
    try:
        yield
    finally:
        module.pad_or_trim = original


def _faster_whisper_segments(model, audio, settings: GenerationSettings, options: dict, batch_size: int):
    from faster_whisper import BatchedInferencePipeline

    if batch_size > 0:
        segments, _ = BatchedInferencePipeline(model).transcribe(audio, batch_size=batch_size, **options)
    else:
        segments, _ = model.transcribe(audio, condition_on_previous_text=settings.condition_on_previous_text,
                                       vad_filter=False, **options)
    return [(s.start, s.end, s.text.strip()) for s in segments]


def pipeline_labels(model_dir: str, recordings: list, settings: GenerationSettings, window: float, device: str,
                    batch_size: int) -> Segments:
    """transformers' chunked long-form algorithm: windows with a 1/6 stride on each side, merged."""
    from transformers import pipeline

    from k2d.models.names import resolve_model

    asr = pipeline("automatic-speech-recognition", model=resolve_model(model_dir), device=device,
                   chunk_length_s=window, batch_size=batch_size)
    if asr.tokenizer.pad_token_id is None:  # Whisper's packaged tokenizer has none; batching needs one
        asr.tokenizer.pad_token_id = asr.model.config.eos_token_id
    outputs = asr([{"raw": read_whole(r), "sampling_rate": SAMPLE_RATE} for r in recordings],
                  generate_kwargs={"language": settings.language, "task": settings.task,
                                   "num_beams": settings.num_beams}, return_timestamps=settings.timestamps)
    return {r.id: [pipeline_segment(chunk, r.duration) for chunk in out.get("chunks", [])]
            or [(0.0, r.duration, out["text"].strip())] for r, out in zip(recordings, outputs, strict=True)}


def pipeline_segment(chunk: dict, duration: float) -> tuple[float, float, str]:
    """A pipeline chunk as a segment (its last chunk may have no end time: the recording's end)."""
    start, end = chunk["timestamp"]
    return (start or 0.0, duration if end is None else end, chunk["text"].strip())
