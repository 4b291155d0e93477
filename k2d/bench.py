"""Benchmarks: speed and memory, measured side by side in one process so that ratios are fair.

    # decoding speed (real-time factor) of several models on the same audio, 5 timed runs after a warm-up
    python -m k2d.bench rtf --models teacher=egs/mini_cs/models/teacher student=exp/mini_cs/student_composite/best \\
        --recordings data/mini_cs/manifests/mini_cs_recordings_test_in.jsonl.gz --seconds 120

    # the real architectures with random weights: Whisper Large-v2 vs its 2-decoder-layer student
    python -m k2d.bench shapes --shape large-v2 --tokens 40

    # training step time and peak memory: CE only, KD with the encoder run (shared, or two), KD from the
    # teacher cache (encoder states; encoder states + teacher top-k, no teacher loaded)
    python -m k2d.bench train --teacher egs/mini_cs/models/teacher --cuts CUTS.jsonl.gz

    # stage 1 / 3 throughput: audio seconds per second at batch 1 vs batch N
    python -m k2d.bench throughput --teacher T --validator V --recordings REC.jsonl.gz --cuts CHUNKS.jsonl.gz

    # stage 1 with and without voice activity detection (the stage's own config): speed, audio skipped,
    # hallucinations (text over non-speech, repetition loops) and label MER against the true supervisions
    python -m k2d.bench vad --teacher T --config egs/mini_cs_whisper/conf/pseudo_label.yaml \
        --recordings REC.jsonl.gz --supervisions SUP.jsonl.gz

    # one model in every runtime a user may ship it with (k2d, CTranslate2, faster-whisper, sherpa-onnx;
    # float32 and int8), utterance by utterance: size on disk, RTF, MER, same text as k2d
    python -m k2d.bench runtimes --model exp/mini_cs/export --recordings REC.jsonl.gz --supervisions SUP.jsonl.gz \
        --exports-dir exp/mini_cs/runtimes

Each prints a Markdown table and can write it (--output FILE). Absolute times mean something only on the
hardware named in the table; compare ratios within one table.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from k2d.audio import SAMPLE_RATE
from k2d.cuts import teacher_topk_field
from k2d.inference.backends import load_recognizer
from k2d.inference.settings import GenerationSettings
from k2d.metrics.scoring import score_texts
from k2d.models.whisper import add_device_argument, count_parameters, load_whisper, resolve_device
from k2d.speed import (
    decode_chunks,
    hardware,
    measure_rtf,
    rtf_table,
    select_audio,
    spread_audio,
    timed,
)
from k2d.utils import setup_logging

log = logging.getLogger("k2d.bench")


# ---- real shapes with random weights ----
SHAPES = {
    # (d_model, encoder layers, decoder layers, heads, ffn, vocab, mel bins)
    "large-v2": (1280, 32, 32, 20, 5120, 51865, 80),
    "medium": (1024, 24, 24, 16, 4096, 51865, 80),
    "base": (512, 6, 6, 8, 2048, 51865, 80),
    "tiny-test": (64, 2, 4, 2, 128, 51865, 80),  # for the test suite (full vocabulary: real special-token ids)
}


def random_whisper(shape: str, decoder_layers: int | None = None):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    d, enc, dec, heads, ffn, vocab, mels = SHAPES[shape]
    config = WhisperConfig(
        vocab_size=vocab, num_mel_bins=mels, d_model=d, encoder_layers=enc, decoder_layers=decoder_layers or dec,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        max_source_positions=1500, max_target_positions=448,
    )
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model = model.to_empty(device="cpu").apply(_init_small)
    model.tie_weights()  # to_empty unties the output projection from the token embedding; Whisper shares them
    return model


def _init_small(module):
    if isinstance(module, (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d)):
        torch.nn.init.normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            torch.nn.init.zeros_(module.bias)
    elif isinstance(module, torch.nn.LayerNorm):
        torch.nn.init.ones_(module.weight)
        torch.nn.init.zeros_(module.bias)


@torch.no_grad()
def forced_decode_time(model, tokens: int, batch: int, runs: int, device: torch.device) -> dict:
    """Encoder on 30 s of features plus exactly `tokens` greedy decoder steps with a KV cache."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    features = torch.randn(batch, model.config.num_mel_bins, 3000, device=device, dtype=model.dtype)

    def run():
        encoder_out = model.model.encoder(features).last_hidden_state
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        token = torch.full((batch, 1), 50258, device=device)
        for _ in range(tokens):
            out = model(encoder_outputs=(encoder_out,), decoder_input_ids=token, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            token = out.logits[:, -1:].argmax(-1)

    times = timed(run, runs)
    return {"seconds": statistics.mean(times), "std": statistics.pstdev(times)}


def bench_shapes(shape: str, tokens: int, batch: int, runs: int, device: str, dtype: str) -> str:
    dev = resolve_device(device)
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    rows = []
    for name, decoder_layers in ((f"{shape} (random weights)", None), (f"{shape} student, 2 decoder layers", 2)):
        model = random_whisper(shape, decoder_layers).to(dev, torch_dtype).eval()
        result = forced_decode_time(model, tokens, batch, runs, dev)
        rows.append((name, count_parameters(model), result))
        log.info("%s: %.3f s per batch of %d 30 s windows, %d tokens each", name, result["seconds"], batch, tokens)
        del model
    base = rows[0][2]["seconds"]
    lines = [f"{hardware()}, {dtype}, batch {batch}, 30 s of input, {tokens} forced output tokens, "
             f"{runs} runs after a warm-up",
             "", "| model | parameters | seconds per batch | speed-up |", "|---|---|---|---|"]
    for name, params, result in rows:
        lines.append(f"| {name} | {params / 1e6:.0f}M | {result['seconds']:.3f} ± {result['std']:.3f} | "
                     f"{base / result['seconds']:.2f}x |")
    return "\n".join(lines)


# ---- training step time and memory ----
TRAIN_MODES = {
    "ce": "CE only (student)",
    "kd_shared": "KD, encoder shared (run once)",
    "kd_separate": "KD, two encoders (student encoder trained too)",
    "kd_cached": "KD, cached encoder states (teacher decoder run)",
    "kd_cached_topk": "KD, cached encoder + teacher top-k (no teacher loaded)",
    "kd_cached_topk_bf16": "the same, bf16 autocast",
    "kd_cached_topk_frozen_emb": "the same, fp32, token embedding / output projection frozen",
    "kd_cached_topk_bf16_frozen_emb": "the same, bf16 autocast and frozen token embedding",
    "kd_cached_topk_bf16_frozen_emb_fused": "the same, and the fused AdamW kernel (k2d's trainer)",
}


def train_step_stats(work: Path, mode: str, steps: int, max_duration: float, device: str,
                     profile: bool = False) -> dict:
    """Mean step time and peak memory of `steps` training steps in one of TRAIN_MODES. `work` holds what
    bench_train prepared: teacher/, student/ (made from it) and cached.jsonl.gz (its cached outputs)."""
    from lhotse import CutSet

    from k2d.models.tokenizer import window_seconds
    from k2d.train.data import Collator, CutDataset, LabelOptions, make_sampler
    from k2d.train.model import WhisperKDModel

    dev = resolve_device(device)
    student, processor = load_whisper(work / "student", device=str(dev))
    teacher = None
    if mode in ("kd_shared", "kd_separate", "kd_cached"):
        teacher, _ = load_whisper(work / "teacher", device=str(dev))
    student.model.encoder.requires_grad_(mode == "kd_separate")
    student.model.decoder.embed_tokens.requires_grad_(not mode.endswith("frozen_emb"))
    amp = torch.bfloat16 if "_bf16" in mode else None
    model = WhisperKDModel(student, teacher, beta=1.0 if mode == "ce" else 0.8, gamma=0.0 if mode == "ce" else 1.0)
    model = model.to(dev).train()
    cuts = CutSet.from_file(work / ("cached.jsonl.gz" if mode.startswith("kd_cached") else "cuts.jsonl.gz"))
    if mode == "kd_cached":  # encoder states from the cache, teacher logits computed
        cuts = cuts.map(_without_topk)
    sampler = make_sampler(cuts, max_duration, num_buckets=1, seed=0)
    sampler.set_epoch(0)
    tokenizer = processor.tokenizer
    dataset = CutDataset(tokenizer, Collator(processor.feature_extractor, tokenizer.eos_token_id),
                         LabelOptions(window=window_seconds(student.config.max_source_positions), prompt_prob=0.0))
    batches = [dataset[cuts_] for _, cuts_ in zip(range(steps + 1), sampler, strict=False)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                                  fused="fused" in mode)
    model.log_accuracy = "fused" not in mode  # the new trainer: accuracy only on the steps that log it
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def step(batch):
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            loss, _, _ = model(batch=batch.to(dev))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step(batches[0])  # warm-up
    if profile:  # where one step's time goes, by operator (stderr): what to make cheaper next
        from torch.profiler import profile as torch_profile

        with torch_profile() as prof:
            step(batches[0])
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15), file=sys.stderr)
    times = []
    for batch in batches[1:]:
        start = time.perf_counter()
        step(batch)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"mode": mode, "step_seconds": statistics.mean(times), "peak_bytes": peak, "steps": len(times),
            "memory": "GPU max allocated" if dev.type == "cuda" else "process peak RSS"}


def _without_topk(cut):
    cut.custom = {k: v for k, v in cut.custom.items() if not k.startswith(teacher_topk_field(""))}
    return cut


def bench_cuts(cuts, seconds: float):
    """The first cuts that hold `seconds` of audio: what the timed steps draw from, and all that is cached."""
    chosen, total = [], 0.0
    for cut in cuts:
        if total >= seconds:
            break
        chosen.append(cut)
        total += cut.duration
    return chosen


def prepare_train_bench(teacher: str, cuts: str, work: Path, topk: int, device: str, seconds: float) -> None:
    """The teacher, its student and the teacher cache of the first `seconds` of `cuts`, made once for every
    mode."""
    from lhotse import CutSet

    from k2d import cache_teacher
    from k2d.models.student import create_student
    from k2d.models.whisper import save_model_dir

    teacher_model, processor = load_whisper(teacher)
    save_model_dir(teacher_model, processor, work / "teacher")
    save_model_dir(create_student(teacher_model, [0, -1]), processor, work / "student")
    CutSet.from_cuts(bench_cuts(CutSet.from_file(cuts), seconds)).to_file(work / "cuts.jsonl.gz")
    code = cache_teacher.main(["--teacher", str(work / "teacher"), "--cuts", str(work / "cuts.jsonl.gz"),
                               "--metrics", "", "--output", str(work / "cached.jsonl.gz"),
                               "--cache-topk", str(topk), "--device", device])
    if code != 0:
        raise RuntimeError(f"caching the teacher's outputs for the benchmark failed ({code})")


def bench_train(teacher: str, cuts: str, steps: int, max_duration: float, device: str, topk: int = 64,
                modes: list[str] | None = None, profile: bool = False) -> str:
    import tempfile

    modes = modes or list(TRAIN_MODES)
    rows, profiles = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # twice the audio the warm-up and timed steps take: batches are full, little else is cached
        prepare_train_bench(teacher, cuts, work, topk, device, seconds=2 * (steps + 1) * max_duration)
        for mode in modes:
            # One process per mode: the peak RSS of a process never goes down.
            out = subprocess.run(
                [sys.executable, "-m", "k2d.bench", "_train_one", "--work", str(work), "--mode", mode,
                 "--steps", str(steps), "--max-duration", str(max_duration), "--device", device,
                 *(["--profile"] if profile else [])],
                capture_output=True, text=True, check=True,
            )
            if profile:
                profiles.append(f"### {mode}\n\n```\n{out.stderr.strip().split(chr(10) * 2)[-1]}\n```")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["step_seconds"]
    lines = [f"{hardware()}, {teacher}, {steps} steps of {max_duration:.0f} s of audio after a warm-up "
             f"({rows[0]['memory']}; cached top-k: k = {topk})", "",
             f"| training | step time | steps per hour | speed-up vs {rows[0]['mode']} | peak memory |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {TRAIN_MODES[r['mode']]} | {r['step_seconds']:.3f} s | {3600 / r['step_seconds']:.0f} | "
                     f"{base / r['step_seconds']:.2f}x | {r['peak_bytes'] / 2**20:.0f} MiB |")
    return "\n\n".join(["\n".join(lines), *profiles])


# ---- stage 1 / 3 throughput ----
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


def labels_mer(references: dict[str, str], hypotheses: dict[str, str]) -> float | None:
    return score_texts(references, hypotheses)[0].mer.rate if references else None


def bench_throughput(teacher: str, validator: str, recordings_path: str, cuts_path: str, seconds: float, batch: int,
                     device: str, settings: GenerationSettings | None = None, supervisions_path: str | None = None,
                     compute_type: str = "auto", external: bool = True) -> str:
    """Stage 1 (long-form labelling) and stage 3 (chunks) throughput, batch 1 vs batched, for both of k2d's
    backends, beside faster-whisper (sequential and batched) and transformers' chunked pipeline on the same
    model and audio; with the true text (--supervisions), the MER of each labeller's output."""
    from lhotse import CutSet, RecordingSet

    from k2d import labellers
    from k2d.audio import load_cut_audio

    recordings = spread_audio(RecordingSet.from_file(recordings_path), seconds, batch)
    audio_seconds = sum(r.duration for r in recordings)
    settings = settings or GenerationSettings()
    references = truth_by_recording(supervisions_path, recordings)
    dev = str(resolve_device(device))
    rows = []

    def row(name, b, fn, base_seconds, optional=False):
        texts = {}

        def run():
            texts.update(fn())

        try:
            elapsed = statistics.mean(timed(run, 1))
        except Exception as error:  # an outside labeller that cannot run this model: said in the table
            if not optional:
                raise
            rows.append((name, b, None, f"cannot run: {str(error).splitlines()[0][:100]}"))
            log.warning("%s cannot run this model: %s", name, error)
            return
        rows.append((name, b, base_seconds / elapsed, labels_mer(references, texts) if texts else None))
        log.info("%s, batch %d: %.1f audio s/s", name, b, rows[-1][2])

    recognizers = {backend: load_recognizer(teacher, device=dev, backend=backend, compute_type=compute_type)
                   for backend in ("transformers", "ctranslate2")}
    for backend, recognizer in recognizers.items():
        for b in (1, batch):  # one recording at a time, then `batch` recordings side by side
            row(f"stage 1, k2d ({backend})", b,
                functools.partial(labellers.k2d_labels, recognizer, recordings, settings, b), audio_seconds)
    # stage 1's `vad: true`: no window without speech reaches the teacher (fewer hallucinations, less work)
    row("stage 1, k2d (ctranslate2) + Silero VAD", batch, functools.partial(
        labellers.k2d_labels, recognizers["ctranslate2"], recordings, settings, batch, vad=True), audio_seconds)
    if external:
        ct2_dir, ct2_type = str(recognizers["ctranslate2"].model_dir), recognizers["ctranslate2"].model.compute_type
        row("faster-whisper transcribe (sequential)", 1, functools.partial(
            labellers.faster_whisper_labels, ct2_dir, recordings, settings, dev.split(":")[0], ct2_type), audio_seconds,
            optional=True)
        row("faster-whisper BatchedInferencePipeline (VAD chunks)", batch, functools.partial(
            labellers.faster_whisper_labels, ct2_dir, recordings, settings, dev.split(":")[0], ct2_type, batch),
            audio_seconds, optional=True)
        row("transformers pipeline (chunked)", batch, functools.partial(
            labellers.pipeline_labels, teacher, recordings, settings, recognizers["transformers"].window, dev, batch),
            audio_seconds, optional=True)
    cuts = CutSet.from_file(cuts_path).subset(first=32)
    audios = [load_cut_audio(c) for c in cuts]
    cut_seconds = sum(a.size for a in audios) / SAMPLE_RATE
    for backend in ("transformers", "ctranslate2"):
        v_recognizer = load_recognizer(validator, device=dev, backend=backend, compute_type=compute_type)
        for b in (1, batch):
            row(f"stage 3, validator on chunks ({backend})", b,
                functools.partial(_decode_chunks_silently, v_recognizer, audios, settings, b), cut_seconds)
    lines = [f"{hardware()}; {teacher}; stage 1 on {audio_seconds:.0f} s of long-form audio from {len(recordings)} "
             f"recordings, stage 3 on {len(audios)} chunks ({cut_seconds:.0f} s) of {validator}; greedy, "
             f"timestamps {'on' if settings.timestamps else 'off'}, language {settings.language}; ctranslate2 "
             f"compute type {recognizers['ctranslate2'].model.compute_type}; one timed run after a warm-up", "",
             "| work | batch | audio seconds per second | vs k2d transformers, batch 1 | label MER |",
             "|---|---|---|---|---|"]
    stage1_base, stage3_base = rows[0][2], next(r[2] for r in rows if r[0].startswith("stage 3"))
    for name, b, rate, mer in rows:
        if rate is None:
            lines.append(f"| {name} | {b} | - | - | {mer} |")
            continue
        base = stage3_base if name.startswith("stage 3") else stage1_base
        lines.append(f"| {name} | {b} | {rate:.1f} | {rate / base:.2f}x | "
                     f"{'-' if mer is None else f'{100 * mer:.2f}%'} |")
    return "\n".join(lines)


# ---- stage 1 with and without VAD ----
def bench_vad(teacher: str, config_path: Path, recordings_path: str, supervisions_path: str, device: str) -> str:
    """Stage 1 as configured, once without and once with `vad`, on the same recordings: speed, audio the
    model never saw, hallucinations (k2d.metrics.hallucination) and the label MER."""
    from lhotse import RecordingSet

    from k2d.audio import read_window
    from k2d.config import build_config, load_yaml
    from k2d.filtering import load_truth
    from k2d.inference.backends import recognizer_for
    from k2d.inference.transcribe import decode_windows, joined_text, transcribe_longform
    from k2d.metrics.hallucination import MIN_SPEECH, HallucinationCounts, hallucinations
    from k2d.pseudo_label import PseudoLabelConfig

    config = build_config(PseudoLabelConfig, load_yaml(config_path), str(config_path))
    recordings = list(RecordingSet.from_file(recordings_path))
    audio_seconds = sum(r.duration for r in recordings)
    references = truth_by_recording(supervisions_path, recordings)
    speech = {key: sorted((s.start, s.end) for s in sups) for key, sups in load_truth(Path(supervisions_path)).items()}
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


def bench_runtimes(args) -> str:
    from k2d.models.names import resolve_model
    from k2d.runtimes import measure_runtimes, model_window, runtimes_header, runtimes_table, short_utterances

    model = resolve_model(args.model)
    audios, references = short_utterances(args.recordings, args.supervisions, args.utterances, model_window(model))
    threads = torch.get_num_threads()
    rows = measure_runtimes(model, args.exports_dir, audios, references, args.language, args.runs, threads)
    header = runtimes_header(rows, audios, args.runs, threads)
    return f"{hardware()}, {args.model}\n\n{header}\n\n{runtimes_table(rows)}"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rtf = sub.add_parser("rtf", help="real-time factor of models on the same audio")
    rtf.add_argument("--models", nargs="+", required=True, help="NAME=PATH pairs (the first is the reference)")
    rtf.add_argument("--recordings", required=True, help="recordings manifest")
    rtf.add_argument("--seconds", type=float, default=120.0, help="audio to decode per run")
    rtf.add_argument("--runs", type=int, default=5)
    rtf.add_argument("--batch-size", type=int, default=8)
    shapes = sub.add_parser("shapes", help="real Whisper shapes, random weights, forced output length")
    shapes.add_argument("--shape", default="large-v2", choices=sorted(SHAPES))
    shapes.add_argument("--tokens", type=int, default=40)
    shapes.add_argument("--batch", type=int, default=1)
    shapes.add_argument("--runs", type=int, default=3)
    shapes.add_argument("--dtype", default="float32")
    train = sub.add_parser("train", help="training step time and peak memory (with and without the teacher cache)")
    train.add_argument("--teacher", required=True)
    train.add_argument("--cuts", required=True, help="chunk cuts to train on (stage 3 or 4 output)")
    train.add_argument("--steps", type=int, default=5)
    train.add_argument("--max-duration", type=float, default=80.0)
    train.add_argument("--topk", type=int, default=64, help="teacher top-k stored for the cached-logits mode")
    train.add_argument("--modes", nargs="+", choices=sorted(TRAIN_MODES), help="default: all, CE first")
    train.add_argument("--profile", action="store_true", help="and an operator profile of one step of each mode")
    one = sub.add_parser("_train_one", help=argparse.SUPPRESS)
    one.add_argument("--work", type=Path, required=True)
    one.add_argument("--mode", required=True)
    one.add_argument("--steps", type=int, default=5)
    one.add_argument("--max-duration", type=float, default=80.0)
    one.add_argument("--profile", action="store_true", help="print an operator profile of one step to stderr")
    through = sub.add_parser("throughput", help="stage 1 and 3 throughput, batch 1 vs batched")
    through.add_argument("--teacher", required=True)
    through.add_argument("--validator", required=True)
    through.add_argument("--recordings", required=True)
    through.add_argument("--cuts", required=True)
    through.add_argument("--seconds", type=float, default=480.0, help="long-form audio, spread over --batch recordings")
    through.add_argument("--batch", type=int, default=8)
    through.add_argument("--supervisions", help="true supervisions of --recordings: score each labeller's output")
    through.add_argument("--compute-type", default="auto", help="CTranslate2 compute type (float32, int8, ...)")
    through.add_argument("--language", default="zh")
    vad = sub.add_parser("vad", help="stage 1 with and without voice activity detection: hallucinations, MER, speed")
    vad.add_argument("--teacher", required=True)
    vad.add_argument("--config", type=Path, required=True, help="stage 1's config (pseudo_label.yaml)")
    vad.add_argument("--recordings", required=True)
    vad.add_argument("--supervisions", required=True, help="the recordings' true supervisions")
    runtimes = sub.add_parser("runtimes", help="one model in every runtime (k2d, CTranslate2, faster-whisper, "
                              "sherpa-onnx; float32 and int8): size, RTF, MER, same text")
    runtimes.add_argument("--model", required=True, help="model directory (save_pretrained) or installed name")
    runtimes.add_argument("--recordings", required=True)
    runtimes.add_argument("--supervisions", required=True, help="their utterances are decoded one by one")
    runtimes.add_argument("--utterances", type=int, default=20)
    runtimes.add_argument("--runs", type=int, default=1, help="timed runs after the one that gives the texts")
    runtimes.add_argument("--exports-dir", type=Path, required=True, help="where the exports are made (kept)")
    runtimes.add_argument("--language", default="zh")
    for p in (rtf, shapes, train, one, through, vad, runtimes):
        add_device_argument(p)
        p.add_argument("--output", type=Path, help="also write the table to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    if args.command == "rtf":
        from lhotse import RecordingSet

        models = dict(item.split("=", 1) for item in args.models)
        recordings = select_audio(RecordingSet.from_file(args.recordings), args.seconds)
        rows = measure_rtf(models, recordings, args.runs, args.device, batch_size=args.batch_size)
        header = f"{hardware()}, {rows[0]['audio_seconds']} s of audio, {args.runs} runs after a warm-up"
        table = header + "\n\n" + rtf_table(rows)
    elif args.command == "shapes":
        table = bench_shapes(args.shape, args.tokens, args.batch, args.runs, args.device, args.dtype)
    elif args.command == "train":
        table = bench_train(args.teacher, args.cuts, args.steps, args.max_duration, args.device, args.topk, args.modes,
                            args.profile)
    elif args.command == "_train_one":
        stats = train_step_stats(args.work, args.mode, args.steps, args.max_duration, args.device, args.profile)
        print(json.dumps(stats))
        return 0
    elif args.command == "runtimes":
        table = bench_runtimes(args)
    elif args.command == "vad":
        table = bench_vad(args.teacher, args.config, args.recordings, args.supervisions, args.device)
    else:
        table = bench_throughput(args.teacher, args.validator, args.recordings, args.cuts, args.seconds, args.batch,
                                 args.device, GenerationSettings(language=args.language), args.supervisions,
                                 args.compute_type)
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
