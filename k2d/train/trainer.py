"""The training loop shared by the demo's bootstrap training and stage 5 distillation.

AdamW, warm-up then constant or linear decay, gradient accumulation and clipping, bf16/fp16 autocast on GPU,
bf16 autocast on CPUs that support it (`cpu_amp`), periodic validation with best-checkpoint selection
by validation MER and early stopping on a plateau (`patience`), SIGTERM ends the step and checkpoints (a
preempted or time-limited job resumes exactly), exact resume (model, optimiser,
scheduler, position in the epoch, RNG), TensorBoard logs, a progress bar, and DDP under torchrun.

Layout of OUT_DIR:
  checkpoints/latest.pt      resume point (written atomically every `checkpoint_every` steps)
  best/                      the student with the lowest validation MER (save_pretrained + processor)
  tensorboard/               loss curves and validation metrics
  validation.jsonl           every validation: step, seconds trained, metrics (the learning curve)
  train_config.yaml          the resolved configuration
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from k2d.train.config import TrainConfig
from k2d.train.data import SkipBatches
from k2d.utils import atomic_path, cpu_supports_bf16, exclusive, remove_stray_temporaries

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of the current epoch already consumed
    best_mer: float = math.inf
    best_step: int = -1
    stale_validations: int = 0  # validations since the best one (early stopping)
    train_seconds: float = 0.0  # wall time spent in training steps, over every sitting
    plateaued: bool = False  # stopped early: `patience` validations without a better MER


def lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.schedule == "linear":
            return max(0.0, (config.max_steps - step) / max(1, config.max_steps - config.warmup_steps))
        return 1.0

    return factor


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    amp = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(config.amp_dtype)
    if device.type == "cuda":
        return amp
    if config.cpu_amp and amp == torch.bfloat16 and cpu_supports_bf16():
        return amp
    if config.cpu_amp:
        log.warning("cpu_amp: this CPU has no native bfloat16 (or amp_dtype is not bfloat16): training in float32")
    return None


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def init_distributed(device: torch.device) -> torch.device:
    """Join the torchrun process group when launched by torchrun; returns this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return device
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    log.info("rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return device


SHOWN_STATS = ("loss", "ce", "kl", "ctc")  # on the progress bar


class Stopped(Exception):
    """Training stopped on a signal after writing its checkpoint; rerunning resumes it."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


def _ignore_sigterm(worker_id: int) -> None:
    """A data loader worker leaves SIGTERM to the training process (Slurm and pkill signal every process):
    it would die, and the training process with it, before the step is finished and checkpointed."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _identity(batch):
    return batch


class Trainer:
    """Train `model` (a WhisperKDModel) on batches from `sampler` + `dataset`.

    `validate(student) -> {"mer": ..., ...}` scores the student; `save_best(student, out_dir)` writes it.
    `callbacks` are called as fn(state) after every optimiser step (tests use one to simulate a kill).
    """

    def __init__(
        self,
        model,
        sampler,
        dataset,
        out_dir: Path,
        config: TrainConfig,
        device: torch.device,
        validate: Callable | None = None,
        save_best: Callable | None = None,
        callbacks: list[Callable] | None = None,
    ):
        self.config, self.device, self.out_dir = config, device, Path(out_dir)
        self.sampler, self.dataset = sampler, dataset
        self.validate, self.save_best = validate, save_best
        # Only rank 0 holds the validation data, but every rank must meet it after validating: rank 0 says
        # whether there is any (a rank that skipped the barrier would hang the next all-reduce).
        validating = [validate is not None]
        if is_distributed():
            dist.broadcast_object_list(validating, src=0)
        self.validating = validating[0]
        self.callbacks = callbacks or []
        self.model = model.to(device)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        # the fused kernel: one pass over all parameters instead of a dozen element-wise ops per tensor
        # (a third of a CPU step went to those); same update, same state dict
        self.optimizer = torch.optim.AdamW(
            self.trainable, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(config))
        self.ddp_model = (
            torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
            if is_distributed()
            else model
        )
        self.amp_dtype = autocast_dtype(config, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.state = TrainState()
        self.writer = None
        self.stop_signal: int | None = None

    # ---- checkpoints ----
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoints" / "latest.pt"

    def save_checkpoint(self) -> None:
        if rank() != 0:
            return
        payload = {
            "model": {k: v for k, v in self.model.state_dict().items() if not k.startswith("teacher.")},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": vars(self.state).copy(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(payload, tmp)

    def load_checkpoint(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        payload = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        missing, unexpected = self.model.load_state_dict(payload["model"], strict=False)
        if unexpected or any(not k.startswith("teacher.") for k in missing):
            raise RuntimeError(f"checkpoint {self.checkpoint_path} does not match the model: {missing} {unexpected}")
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.state = TrainState(**payload["state"])
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        log.info("resumed from %s at step %d", self.checkpoint_path, self.state.step)
        return True

    # ---- the loop ----
    def _batches(self) -> Iterator:
        """Micro-batches forever, epoch after epoch, starting where the state says."""
        while True:
            self.sampler.set_epoch(self.state.epoch)
            self.dataset.set_epoch(self.state.epoch)
            loader = DataLoader(
                self.dataset,
                sampler=SkipBatches(self.sampler, self.state.batches_in_epoch),
                batch_size=None,
                num_workers=self.config.num_workers,
                collate_fn=_identity,
                worker_init_fn=_ignore_sigterm,
                persistent_workers=False,
            )
            produced = False
            for batch in loader:
                produced = True
                yield batch
            if not produced and self.state.batches_in_epoch == 0:
                raise RuntimeError("the training data yields no batches (empty manifest?)")
            self.state.epoch += 1
            self.state.batches_in_epoch = 0

    def _micro_step(self, batch, sync: bool) -> dict[str, torch.Tensor]:
        batch = batch.to(self.device)
        # token accuracy (an argmax over the vocabulary) only on the steps that log it
        self.model.log_accuracy = (self.state.step + 1) % self.config.log_every == 0
        context = self.ddp_model.no_sync() if (is_distributed() and not sync) else contextlib.nullcontext()
        with context:
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                loss, stats, _ = self.ddp_model(batch=batch)
            self.scaler.scale(loss / self.config.grad_accum).backward()
        return stats

    def _optimizer_step(self) -> float:
        self.scaler.unscale_(self.optimizer)
        norm = (
            torch.nn.utils.clip_grad_norm_(self.trainable, self.config.clip_grad_norm)
            if self.config.clip_grad_norm > 0
            else torch.tensor(0.0)
        )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return float(norm)

    def _validate(self) -> None:
        if not self.validating:
            return
        if rank() == 0:
            self.model.eval()
            metrics = self.validate(self.model.student)
            self.model.train()
            for key, value in metrics.items():
                self.writer.add_scalar(f"valid/{key}", value, self.state.step)
            mer = metrics["mer"]
            improved = mer < self.state.best_mer
            self.state.stale_validations = 0 if improved else self.state.stale_validations + 1
            record = {"step": self.state.step, "train_seconds": round(self.state.train_seconds, 1), **metrics}
            with open(self.out_dir / "validation.jsonl", "a", encoding="utf-8") as curve:
                curve.write(json.dumps(record) + "\n")
            log.info(
                "step %d: validation %s%s", self.state.step,
                ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()), " (best so far)" if improved else "",
            )
            if improved:
                self.state.best_mer, self.state.best_step = mer, self.state.step
                if self.save_best is not None:
                    self.save_best(self.model.student, self.out_dir / "best")
        plateaued = [self._plateau_reached()]
        if is_distributed():
            dist.broadcast_object_list(plateaued, src=0)  # every rank stops at the same step
        if plateaued[0]:
            self.state.plateaued = True
            log.info("step %d: %d validations without a better MER than step %d's: stopping (patience)",
                     self.state.step, self.state.stale_validations, self.state.best_step)

    def _plateau_reached(self) -> bool:
        """`patience` validations without a better MER, at or after `min_steps`."""
        return (self.config.patience > 0 and self.state.stale_validations >= self.config.patience
                and self.state.step >= self.config.min_steps)

    def fit(self) -> TrainState:
        # a second run in the same directory would race on the checkpoints and the best model
        with exclusive(self.out_dir / f".train-rank{rank()}.lock", f"training in {self.out_dir}"):
            for stray in remove_stray_temporaries(self.checkpoint_path.parent):
                log.info("removed %s, a checkpoint a killed run left unfinished", stray)
            # SIGTERM (Slurm's preemption and time limit, k2d.launch, kill): finish the step, checkpoint, stop
            if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
                return self._fit()
            previous = signal.signal(signal.SIGTERM, self._stop_requested)
            try:
                return self._fit()
            finally:
                signal.signal(signal.SIGTERM, previous)

    def _stop_requested(self, signum, frame) -> None:
        self.stop_signal = signum

    def _fit(self) -> TrainState:
        torch.manual_seed(self.config.seed)
        resumed = self.load_checkpoint()
        # a run stopped on a plateau goes on when resumed with more patience or a later min_steps
        self.state.plateaued = self.state.plateaued and self._plateau_reached()
        if rank() == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(self.out_dir / "tensorboard")
        if self.state.step >= self.config.max_steps or self.state.plateaued:
            log.info("training already finished (%d steps%s)", self.state.step,
                     ", stopped on a plateau" if self.state.plateaued else "")
            return self.state
        self.model.train()
        progress = tqdm(
            total=self.config.max_steps, initial=self.state.step, desc="train", unit="step", disable=rank() != 0
        )
        started, tokens = time.time(), 0
        if not resumed:
            log.info("training %d trainable parameters for %d steps", sum(p.numel() for p in self.trainable),
                     self.config.max_steps)
        # closed on every way out (a signal's Stopped included): a loader worker ignores SIGTERM, so one left
        # running would keep the interpreter from exiting (multiprocessing joins it at exit)
        with contextlib.closing(self._batches()) as batches:
            while self.state.step < self.config.max_steps and not self.state.plateaued:
                step_started = time.time()
                for micro in range(self.config.grad_accum):
                    batch = next(batches)
                    stats = self._micro_step(batch, sync=micro == self.config.grad_accum - 1)
                    tokens += batch.num_tokens
                    self.state.batches_in_epoch += 1
                grad_norm = self._optimizer_step()
                self.state.step += 1
                self.state.train_seconds += time.time() - step_started
                progress.update(1)
                progress.set_postfix({k: f"{float(v):.3f}" for k, v in stats.items() if k in SHOWN_STATS})
                if rank() == 0 and self.state.step % self.config.log_every == 0:
                    for key, value in stats.items():
                        self.writer.add_scalar(f"train/{key}", float(value), self.state.step)
                    self.writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.state.step)
                    self.writer.add_scalar("train/grad_norm", grad_norm, self.state.step)
                    self.writer.add_scalar("train/tokens_per_s", tokens / (time.time() - started), self.state.step)
                last = self.state.step == self.config.max_steps
                if self.state.step % self.config.valid_every == 0 or last:
                    self._validate()
                    last = last or self.state.plateaued
                if self.state.step % self.config.checkpoint_every == 0 or last:
                    self.save_checkpoint()
                for callback in self.callbacks:
                    callback(self.state)
                if self.stop_signal is not None:
                    self.save_checkpoint()
                    progress.close()
                    log.warning("stopped by signal %d at step %d, checkpoint written: the same command resumes "
                                "from here", self.stop_signal, self.state.step)
                    raise Stopped(self.stop_signal)
        progress.close()
        if not self.validating and self.save_best is not None and rank() == 0:
            # nothing to choose by: the last step is the model (the caller says so)
            self.save_best(self.model.student, self.out_dir / "best")
            self.state.best_step = self.state.step
        if self.writer is not None:
            self.writer.close()
        if rank() == 0:
            log.info("trained to step %d in %.1f s; best/ is step %d%s", self.state.step, time.time() - started,
                     self.state.best_step, f" (validation MER {self.state.best_mer:.4f})" if self.validating else "")
        return self.state

