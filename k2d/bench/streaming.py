"""Training step time of streaming students (seed 003, k2d.streaming.task) on the same real batches, one row
per model variant, rows interleaved over rounds:

    python -m k2d.bench stream-train --config egs/mini_cs_streaming/conf/train.yaml \\
        --data-dir W/data/mini_cs_streaming/espnet/asr_finetune --tokens W/data/mini_cs_streaming/tokens \\
        --rows espnet narrow32:subsampling_channels=32

A row is NAME[:KEY=VALUE,...]: a streaming_encoder_conf option (ChunkedEncoder's) or a model_conf option over
the config's, each VALUE a YAML scalar. Rows with KD (kd or apc_shift) need --teacher-config and --teacher-model."""

from __future__ import annotations

import inspect
import statistics
import time
from pathlib import Path

import soundfile as sf
import torch
import yaml

from k2d.kaldi_text import read_text_file
from k2d.models.whisper import resolve_device
from k2d.speed import hardware, synchronize


def encoder_options() -> set[str]:
    from k2d.streaming.task import ChunkedEncoder  # ESPnet's import is slow: only the benchmark needs it

    return set(inspect.signature(ChunkedEncoder).parameters) - {"input_size"}


def parse_row(spec: str) -> tuple[str, dict, dict]:
    """'NAME:KEY=VALUE,...' -> (NAME, streaming_encoder_conf overrides, model_conf overrides); values are YAML."""
    name, _, options = spec.partition(":")
    encoder, model, encoder_keys = {}, {}, encoder_options()
    for option in filter(None, options.split(",")):
        key, sep, value = option.partition("=")
        if not sep:
            raise ValueError(f"row {spec!r}: {option!r} is not KEY=VALUE")
        (encoder if key in encoder_keys else model)[key] = yaml.safe_load(value)
    return name, encoder, model


def build_student(config: Path, tokens: Path, encoder: dict, model_conf: dict, teacher_config: str | None,
                  teacher_model: str | None, seed: int = 0):
    from k2d.streaming.task import StreamingKDTask

    argv = ["--config", str(config), "--token_list", str(tokens / "tokens.txt"), "--bpemodel",
            str(tokens / "bpe.model")]
    if teacher_model:
        argv += ["--teacher_config", str(teacher_config), "--teacher_model", str(teacher_model)]
    args = StreamingKDTask.get_parser().parse_args(argv)
    args.streaming_encoder_conf = {**(args.streaming_encoder_conf or {}), **encoder}
    args.model_conf = {**(args.model_conf or {}), **model_conf}
    torch.manual_seed(seed)
    return StreamingKDTask.build_model(args), args


def real_batches(args, data_dir: Path, batches: int, batch_seconds: float) -> list[dict]:
    """The data dir's first utterances, tokenized by the task's preprocessor, in batches of about
    `batch_seconds` of audio (the recipe's batch_bins / 16,000)."""
    from k2d.streaming.task import StreamingKDTask

    prepare = StreamingKDTask.build_preprocess_fn(args, train=False)
    collate = StreamingKDTask.build_collate_fn(args, train=False)
    texts = read_text_file(data_dir / "text")
    out, items, seconds = [], [], 0.0
    for uid, path in read_text_file(data_dir / "wav.scp").items():
        audio, rate = sf.read(path, dtype="float32")
        items.append((uid, prepare(uid, {"speech": audio, "text": texts[uid]})))
        seconds += audio.shape[0] / rate
        if seconds >= batch_seconds:
            out.append(collate(items)[1])
            items, seconds = [], 0.0
            if len(out) == batches:
                return out
    raise ValueError(f"{data_dir} has audio for {len(out)} batches of {batch_seconds} s, {batches} asked")


def step_seconds(model, batches: list[dict], device: torch.device) -> float:
    """Mean seconds of one optimizer step (forward, backward, Adam) over `batches`, after one warm-up step."""
    model.to(device)
    batches = [{k: v.to(device) for k, v in batch.items()} for batch in batches]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step(batch):
        loss = model(**batch)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(batches[0])
    synchronize()
    begun = time.perf_counter()
    for batch in batches:
        step(batch)
    synchronize()
    return (time.perf_counter() - begun) / len(batches)


def bench_stream_train(config: Path, data_dir: Path, tokens: Path, rows: list[str], steps: int = 5,
                       rounds: int = 3, batch_seconds: float = 50.0, teacher_config: str | None = None,
                       teacher_model: str | None = None, device: str = "auto") -> str:
    dev = resolve_device(device)
    parsed = [parse_row(spec) for spec in rows]
    if len({name for name, _, _ in parsed}) < len(parsed):
        raise ValueError(f"--rows: each row needs its own name, got {[name for name, _, _ in parsed]}")
    models = {name: build_student(config, tokens, encoder, model_conf, teacher_config, teacher_model)
              for name, encoder, model_conf in parsed}
    batches = real_batches(next(iter(models.values()))[1], data_dir, steps, batch_seconds)
    times = {name: [] for name in models}
    for _ in range(rounds):  # interleaved: a slow moment of the machine touches every row alike
        for name, (model, _) in models.items():
            times[name].append(step_seconds(model, batches, dev))
    first = statistics.median(next(iter(times.values())))
    lines = [f"{hardware()}, device {dev}, {config}, {steps} batches of about "
             f"{batch_seconds:g} s of audio from {data_dir}, {rounds} interleaved round(s) after a warm-up step",
             "", "| row | options | step time (median) | range over rounds | steps per hour | speed-up vs the first "
             "| trainable parameters |", "|---|---|---|---|---|---|---|"]
    for name, spec in zip(models, rows, strict=True):
        median = statistics.median(times[name])
        trainable = sum(p.numel() for p in models[name][0].parameters() if p.requires_grad)  # not the teacher
        options = spec.partition(":")[2] or "the config's"
        lines.append(f"| {name} | {options} | {median:.3f} s | {min(times[name]):.3f}-{max(times[name]):.3f} s | "
                     f"{3600 / median:.0f} | {first / median:.2f}x | {trainable / 1e6:.2f}M |")
    return "\n".join(lines)
