"""The training configurations: the loop's own options (TrainConfig) and stage 5's (DistillConfig, which
k2d.distill trains with and k2d.cache_teacher reads for what to cache)."""

from __future__ import annotations

from dataclasses import dataclass

from k2d.config import ConfigError, option


@dataclass
class TrainConfig:
    learning_rate: float = option(1e-4, "peak AdamW learning rate", positive=True)
    weight_decay: float = option(0.0, "AdamW weight decay", minimum=0)
    warmup_steps: int = option(50, "linear warm-up steps", minimum=0)
    schedule: str = option("constant", "after warm-up: constant or linear (decay to 0 at max_steps)")
    max_steps: int = option(1000, "optimiser steps", minimum=1)
    grad_accum: int = option(1, "micro-batches per optimiser step", minimum=1)
    clip_grad_norm: float = option(1.0, "gradient clipping (0 = off)", minimum=0)
    amp_dtype: str = option("bfloat16", "autocast dtype on GPU: bfloat16, float16 or none")
    cpu_amp: bool = option(False, "on CPU, autocast to bfloat16 too (only where the CPU computes it natively)")
    valid_every: int = option(200, "validate every N steps (and at the end)", minimum=1)
    patience: int = option(
        0, "stop when this many validations in a row did not improve the best MER (0: train all max_steps)",
        minimum=0)
    min_steps: int = option(
        0, "no early stopping before this step (a long-form dev MER is noisy while the student still loops)",
        minimum=0)
    checkpoint_every: int = option(100, "write checkpoints/latest.pt every N steps", minimum=1)
    log_every: int = option(10, "TensorBoard scalars every N steps", minimum=1)
    num_workers: int = option(1, "data loader worker processes", minimum=0)
    seed: int = option(0, "random seed", unbounded=True)

    def __post_init__(self):
        if self.schedule not in ("constant", "linear"):
            raise ConfigError(f"schedule must be constant or linear, got {self.schedule!r}")



@dataclass
class DistillConfig(TrainConfig):
    decoder_layers: list[int] = option([0, -1], "teacher decoder layers that make the student's decoder", minimum=1)
    freeze_encoder: bool = option(True, "keep the copied encoder frozen (then it runs once for both models)")
    freeze_decoder_positions: bool = option(
        True, "keep the decoder's position embeddings frozen (the authors: distil-whisper's --freeze_embed_positions)")
    beta: float = option(0.8, "weight of cross-entropy on the pseudo-labels", minimum=0)
    gamma: float = option(1.0, "weight of KL(teacher || student); 0 = plain supervised training", minimum=0)
    temperature: float = option(2.0, "KD temperature (the KL is scaled by its square)", positive=True)
    freeze_token_embedding: bool = option(
        False, "keep the token embedding (tied to the output projection: half the student's trainable "
        "parameters) as the teacher's; training steps are cheaper")
    whole_window: bool = option(
        False, "train on each chunk's whole window (audio to the window's end, the next segment's start "
        "timestamp closing the label) as long-form decoding sees a window; false: only the audio the label "
        "covers (the authors)")
    pause_open: float = option(
        0.0, "with whole_window: share of chunks whose window opens where the speech before them ended (a "
        "window of long-form decoding resumes at the last segment's end; the same chunks in every epoch)",
        minimum=0, maximum=1)
    timestamp_prob: float = option(0.5, "share of labels that keep their timestamp tokens", minimum=0, maximum=1)
    prompt_prob: float = option(0.2, "share of labels conditioned on the previous chunk's text", minimum=0, maximum=1)
    language: str = option("zh", "language token of the labels")
    mix_lang_emb: bool = option(False, "teacher's <|zh|> embedding = mean of <|zh|> and <|en|> (as in labelling)")
    max_duration: float = option(300.0, "seconds of audio per batch (duration-bucketing sampler)", positive=True)
    num_buckets: int = option(10, "duration buckets", minimum=1)
    valid_percent: float = option(
        2.0, "share of training chunks held out for validation (without --valid-cuts)", minimum=0, maximum=100)
    valid_max_cuts: int = option(100, "most validation cuts decoded", minimum=0)
    dtype: str = option("float32", "weights dtype (autocast on GPU is amp_dtype)")
    cache_teacher: bool = option(
        True, "train from the teacher outputs k2d.cache_teacher stored (run.sh makes them first; exact for a "
        "frozen encoder)")
    cache_topk: int = option(
        0, "also cache the teacher's top-k log-probabilities: training then never loads the teacher (0: encoder only)",
        minimum=0)
    cache_batch_size: int = option(8, "chunks per encoder batch when caching", minimum=1)
    cache_block_size: int = option(256, "chunks per cache file", minimum=1)
    trainer: str = option("k2d", "k2d (this toolkit's trainer) or espnet (ESPnet's own trainer, k2d.espnet.asr_kd)")

    def __post_init__(self):
        super().__post_init__()
        if self.trainer not in ("k2d", "espnet"):
            raise ConfigError(f"trainer must be k2d or espnet, got {self.trainer!r}")
        if self.pause_open and not self.whole_window:
            raise ConfigError("pause_open needs whole_window: true (a window opened at the pause runs to its end)")
