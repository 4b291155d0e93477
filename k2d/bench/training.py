"""Training step time and peak memory of each way to train a student (CE only, KD with the encoder run,
KD from the teacher cache), each mode in its own process."""

from __future__ import annotations

import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from k2d.cuts import teacher_topk_field
from k2d.models.whisper import load_whisper, resolve_device
from k2d.speed import hardware
from k2d.train.model import WhisperKDModel

log = logging.getLogger("k2d.bench")


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

    dev = resolve_device(device)
    student, processor = load_whisper(work / "student", device=str(dev))
    teacher = None
    if mode in ("kd_shared", "kd_separate", "kd_cached"):
        teacher, _ = load_whisper(work / "teacher", device=str(dev))
    student.model.encoder.requires_grad_(mode == "kd_separate")
    student.model.decoder.embed_tokens.requires_grad_("frozen_emb" not in mode)
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
    fused = "fused" in mode
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=fused)
    model.log_accuracy = not fused  # the new trainer: accuracy only on the steps that log it
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
                               "--output", str(work / "cached.jsonl.gz"),
                               "--cache-topk", str(topk), "--device", device])
    if code != 0:
        raise RuntimeError(f"caching the teacher's outputs for the benchmark failed ({code})")


def bench_train(teacher: str, cuts: str, steps: int, max_duration: float, device: str, topk: int = 64,
                modes: list[str] | None = None, profile: bool = False, rounds: int = 1,
                before_code: str | None = None, before_modes: list[str] = ()) -> str:
    """The step-time table of `modes`, after `before_modes` run by the k2d checkout `before_code` (an older
    commit's own code: a before -> after comparison in one run). Each row runs `rounds` times, the rounds
    interleaved (row 1, 2, ..., then again), so that a slow spell of a shared machine falls on every row
    alike; each row is the median of its rounds, with their range."""
    import tempfile

    if rounds < 1:
        raise ValueError(f"--rounds must be at least 1, not {rounds}")
    if before_modes and not before_code:
        raise ValueError("--before-modes needs --before-code (a k2d checkout of the older commit)")
    rows = [(f"{mode}@before", mode, before_code) for mode in before_modes]
    rows += [(mode, mode, None) for mode in modes or list(TRAIN_MODES)]
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in rows}
    profiles = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # twice the audio the warm-up and timed steps take: batches are full, little else is cached
        prepare_train_bench(teacher, cuts, work, topk, device, seconds=2 * (steps + 1) * max_duration)
        for round_ in range(rounds):
            for name, mode, code in rows:
                want_profile = profile and round_ == 0
                out = subprocess.run(  # one process per row: the peak RSS of a process never goes down
                    [sys.executable, "-m", "k2d.bench", "_train_one", "--work", str(work), "--mode", mode,
                     "--steps", str(steps), "--max-duration", str(max_duration), "--device", device,
                     *(["--profile"] if want_profile else [])],
                    capture_output=True, text=True, check=True, env=_code_env(code),
                )
                if want_profile:
                    profiles.append(f"### {name}\n\n```\n{out.stderr.strip().split(chr(10) * 2)[-1]}\n```")
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    labels = {name: TRAIN_MODES.get(mode, mode) for name, mode, _ in rows}
    if before_modes:
        commit = subprocess.run(["git", "-C", before_code, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or before_code
        labels.update({name: f"before (k2d {commit}): {labels[name]}" for name in runs if name.endswith("@before")})
    header = (f"{hardware()}, {teacher}, {steps} steps of {max_duration:.0f} s of audio after a warm-up, "
              f"{rounds} round(s)")
    return train_table(runs, labels, header, topk) + "".join("\n\n" + p for p in profiles)


def _code_env(code: str | None) -> dict | None:
    """The environment of a row run by the k2d checkout `code` (None: this one)."""
    if code is None:
        return None
    if not (Path(code) / "k2d" / "bench" / "__main__.py").is_file():
        raise FileNotFoundError(f"--before-code {code} is not a k2d checkout (no k2d/bench/__main__.py)")
    return {**os.environ, "PYTHONPATH": str(Path(code).resolve())}


def train_table(runs: dict[str, list[dict]], labels: dict[str, str], header: str, topk: int) -> str:
    """Median step time of each row's runs (the first row is the reference of the speed-ups), its range,
    steps per hour and peak memory."""
    modes = list(runs)
    median = {mode: statistics.median(r["step_seconds"] for r in runs[mode]) for mode in modes}
    base = median[modes[0]]
    memory = runs[modes[0]][0]["memory"]
    lines = [f"{header} ({memory}; cached top-k: k = {topk})", "",
             "| training | step time (median) | range over rounds | steps per hour | speed-up vs the first | "
             "peak memory |", "|---|---|---|---|---|---|"]
    for mode in modes:
        times = [r["step_seconds"] for r in runs[mode]]
        peak = max(r["peak_bytes"] for r in runs[mode])
        lines.append(f"| {labels[mode]} | {median[mode]:.3f} s | {min(times):.3f}-{max(times):.3f} s | "
                     f"{3600 / median[mode]:.0f} | {base / median[mode]:.2f}x | {peak / 2**20:.0f} MiB |")
    return "\n".join(lines)
