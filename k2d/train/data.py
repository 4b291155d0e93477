"""Training data: lhotse cuts (or composed windows) -> batches of log-mel features and decoder labels.

Random choices (timestamps shown or not, previous-text prompt or not) are drawn from a generator seeded by
(seed, epoch, example id), so a resumed run sees exactly the batches an uninterrupted run would have seen.
A cut that carries the teacher's cached outputs (k2d.cache_teacher) gives the stored encoder states, and
the stored teacher top-k of the label variant drawn, instead of its audio.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from lhotse import CutSet
from lhotse.utils import fastcopy
from torch.utils.data import Sampler

from k2d.audio import SAMPLE_RATE, labelled_cut, load_cut_audio
from k2d.cuts import ChunkFields, cached_encoder_states, cached_teacher_topk
from k2d.text.script import join_texts
from k2d.train.labels import IGNORE_INDEX, DecoderLabels, TimedText, build_decoder_labels, label_variant


@dataclass
class LabelOptions:
    window: float
    language: str = "zh"
    task: str = "transcribe"
    timestamp_prob: float = 0.5
    prompt_prob: float = 0.2
    seed: int = 0
    whole_window: bool = False  # chunks: train on the whole window (training_view)
    pause_open: float = 0.0  # with whole_window: share of windows opened at the pause before the chunk

    @classmethod
    def of(cls, config, window: float) -> LabelOptions:
        """The label options of a stage-5 config (k2d.train.config.DistillConfig) for a model's window."""
        return cls(window=window, language=config.language, timestamp_prob=config.timestamp_prob,
                   prompt_prob=config.prompt_prob, seed=config.seed, whole_window=config.whole_window,
                   pause_open=config.pause_open)


@dataclass
class Example:
    id: str
    audio: np.ndarray | None  # None when the encoder states are cached
    labels: DecoderLabels
    ctc_ids: list[int] | None  # CTC targets of the whole audio, None when part of the speech is unlabelled
    variant: str = "ts"  # which label form was drawn (k2d.train.labels.label_variant)
    encoder_states: np.ndarray | None = None  # (frames, d_model), cached
    teacher_topk: np.ndarray | None = None  # (len(targets), 2k): cached teacher log-probs, then token ids


@dataclass
class Batch:
    ids: list[str]
    features: torch.Tensor | None  # (B, n_mels, frames); None when encoder_states are given
    input_ids: torch.Tensor  # (B, L)
    targets: torch.Tensor  # (B, L), IGNORE_INDEX where no loss
    ctc_targets: torch.Tensor  # (B, C), padded with 0
    ctc_lengths: torch.Tensor  # (B,), 0 where CTC does not apply
    encoder_states: torch.Tensor | None = None  # (B, frames, d_model) from the teacher cache
    teacher_logprobs: torch.Tensor | None = None  # (B, L, k) cached teacher top-k log-probabilities at T
    teacher_ids: torch.Tensor | None = None  # (B, L, k) their token ids

    def to(self, device: torch.device) -> Batch:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return Batch(**moved)

    @property
    def num_tokens(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())


def example_rng(seed: int, epoch: int, key: str) -> random.Random:
    return random.Random(f"{seed}/{epoch}/{key}")


def make_example(
    key: str, audio: np.ndarray, segments: list[TimedText], tokenizer, options: LabelOptions, epoch: int,
    prompt_text: str | None = None, ctc_units=None,
) -> Example:
    """`ctc_units(text) -> ids` gives the auxiliary CTC targets (default: the tokenizer's text tokens)."""
    rng = example_rng(options.seed, epoch, key)
    # A label without timestamps cannot say where the speech it leaves out (an unfinished segment) begins.
    timestamps = rng.random() < options.timestamp_prob or any(s.end is None for s in segments)
    use_prompt = prompt_text is not None and rng.random() < options.prompt_prob
    labels = build_decoder_labels(
        tokenizer, segments, window=options.window, language=options.language, task=options.task,
        timestamps=timestamps, prompt_text=prompt_text if use_prompt else None,
    )
    complete = all(s.end is not None for s in segments)
    text = join_texts([s.text for s in segments])
    ctc_units = ctc_units or (lambda t: tokenizer.encode(t, add_special_tokens=False))
    ctc_ids = ctc_units(text) if complete else None
    return Example(key, audio, labels, ctc_ids, label_variant(timestamps, use_prompt))


def cut_segments(cut) -> list[TimedText]:
    """The cut's supervisions as timed text relative to the cut; one running past the end is unfinished."""
    segments = []
    for sup in sorted(cut.supervisions, key=lambda s: s.start):
        if sup.start < -1e-3 or not (sup.text or "").strip():
            continue  # began before the cut: its text is not all in the audio
        end = sup.end if sup.end <= cut.duration + 1e-3 else None
        segments.append(TimedText(max(sup.start, 0.0), end, sup.text))
    return segments


MIN_PAUSE_LEAD = 0.1  # seconds: a window opened earlier by less is the same window


def pause_lead(cut, fields: ChunkFields, segments: list[TimedText], pause_open: float) -> float:
    """Seconds by which the chunk's window opens early, at the end of the speech before it (0: at its start).

    A share `pause_open` of the chunks, chosen by a hash of the id: the same chunks in every epoch, for every
    seed and in the teacher cache. The lead is the whole pause, shortened so that the first segment still ends
    inside the window (and the window starts inside the recording)."""
    if not pause_open or not fields.pause_before or not segments or segments[0].end is None:
        return 0.0
    if zlib.crc32(f"pause-open/{cut.id}".encode()) / 2**32 >= pause_open:
        return 0.0
    lead = min(fields.pause_before, cut.start, fields.window_end - segments[0].end)
    return round(lead, 3) if lead >= MIN_PAUSE_LEAD else 0.0


def close_window(segments: list[TimedText], end: float) -> list[TimedText]:
    """The segments of a window that ends at `end`: those complete inside it, then the first one that is not,
    as its start timestamp only (Whisper's form: decoding resumes there)."""
    kept = []
    for segment in segments:
        if segment.end is not None and segment.end <= end + 1e-3:
            kept.append(segment)
            continue
        if segment.start < end:
            kept.append(TimedText(segment.start, None, ""))
        break
    return kept


def training_view(cut, options: LabelOptions) -> tuple[object, list[TimedText]]:
    """(the cut whose audio is read, its timed text) as stage 5 trains on a chunk.

    options.whole_window: the audio runs from the chunk's start to its window's end, as a window of long-form
    decoding does, and the teacher's next segment, when it begins inside, closes the label with its start
    timestamp. With options.pause_open, some windows open earlier, where the previous speech ended
    (pause_lead), and end as much earlier. Otherwise, and for cuts that are not chunks, the authors' form: only
    the audio the label covers (a continued chunk trimmed to its last complete segment), which never shows the
    student a window whose speech runs on past its label."""
    fields = ChunkFields.from_cut(cut)
    labelled = labelled_cut(cut)
    segments = cut_segments(labelled)
    if not options.whole_window or fields is None or fields.window_end is None:
        return labelled, segments
    if fields.next_start is not None:
        segments.append(TimedText(fields.next_start, None, ""))
    lead = pause_lead(cut, fields, segments, options.pause_open)
    shifted = [TimedText(s.start + lead, None if s.end is None else s.end + lead, s.text) for s in segments]
    return fastcopy(cut, start=round(cut.start - lead, 3), duration=fields.window_end), close_window(
        shifted, fields.window_end)


def example_from_cut(cut, tokenizer, options: LabelOptions, epoch: int) -> Example:
    """A chunk cut from stage 2 (or a labelled utterance) in the form `options.whole_window` says
    (training_view). A cut with cached teacher outputs gives those instead of its audio."""
    fields = ChunkFields.from_cut(cut)
    prev_text = fields.prev_text if fields is not None else None
    states = cached_encoder_states(cut)
    view, segments = training_view(cut, options)
    audio = load_cut_audio(view) if states is None else None
    example = make_example(cut.id, audio, segments, tokenizer, options, epoch, prev_text)
    example.encoder_states = states
    example.teacher_topk = cached_teacher_topk(cut, example.variant, len(example.labels.targets))
    return example


class Collator:
    """Examples -> Batch: Whisper log-mel features (padded to the window) and padded label tensors."""

    def __init__(self, feature_extractor, pad_id: int):
        self.feature_extractor = feature_extractor
        self.pad_id = pad_id

    def __call__(self, examples: list[Example]) -> Batch:
        cached = [e.encoder_states is not None for e in examples]
        if any(cached) and not all(cached):
            raise RuntimeError("a batch mixes cuts with and without cached teacher outputs")
        features = states = None
        if all(cached):
            states = torch.from_numpy(np.stack([e.encoder_states for e in examples]))
        else:
            features = self.feature_extractor(
                [e.audio for e in examples], sampling_rate=SAMPLE_RATE, return_tensors="pt"
            ).input_features
        length = max(len(e.labels.input_ids) for e in examples)
        input_ids = torch.full((len(examples), length), self.pad_id, dtype=torch.long)
        targets = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
        ctc_length = max([len(e.ctc_ids or []) for e in examples] + [1])
        ctc_targets = torch.zeros((len(examples), ctc_length), dtype=torch.long)
        ctc_lengths = torch.zeros(len(examples), dtype=torch.long)
        for i, e in enumerate(examples):
            input_ids[i, : len(e.labels.input_ids)] = torch.tensor(e.labels.input_ids)
            targets[i, : len(e.labels.targets)] = torch.tensor(e.labels.targets)
            if e.ctc_ids:
                ctc_targets[i, : len(e.ctc_ids)] = torch.tensor(e.ctc_ids)
                ctc_lengths[i] = len(e.ctc_ids)
        logprobs, ids = self.teacher_topk(examples, length)
        return Batch([e.id for e in examples], features, input_ids, targets, ctc_targets, ctc_lengths, states,
                     logprobs, ids)

    @staticmethod
    def teacher_topk(examples: list[Example], length: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(B, L, k) cached teacher log-probabilities and token ids, or (None, None) without them."""
        if any(e.teacher_topk is None for e in examples):
            return None, None
        k = examples[0].teacher_topk.shape[1] // 2
        logprobs = torch.zeros((len(examples), length, k))
        ids = torch.zeros((len(examples), length, k), dtype=torch.long)
        for i, e in enumerate(examples):
            stored = torch.from_numpy(e.teacher_topk.astype(np.float32))
            logprobs[i, : len(stored)] = stored[:, :k]
            ids[i, : len(stored)] = stored[:, k:].long()
        return logprobs, ids


class CutDataset(torch.utils.data.Dataset):
    """Map-style dataset over the CutSets a lhotse sampler yields: one Batch per CutSet."""

    def __init__(self, tokenizer, collator: Collator, options: LabelOptions):
        self.tokenizer, self.collator, self.options = tokenizer, collator, options
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, cuts: CutSet) -> Batch:
        return self.collator([example_from_cut(c, self.tokenizer, self.options, self.epoch) for c in cuts])


class SkipBatches(Sampler):
    """Yield a batch sampler's batches after dropping the first `skip` (exact resume within an epoch).

    Only the sampler's metadata is walked through for the skipped batches; no audio is loaded.
    """

    def __init__(self, sampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator:
        for index, batch in enumerate(self.sampler):
            if index >= self.skip:
                yield batch


def make_sampler(cuts: CutSet, max_duration: float, num_buckets: int, seed: int, shuffle: bool = True):
    """lhotse's duration-bucketing sampler over a (lazy) CutSet; a manifest too small to bucket (fewer cuts
    than buckets, or one cut) gets as many buckets as it has cuts, or a plain sampler."""
    from lhotse.dataset import DynamicBucketingSampler, SimpleCutSampler

    available = sum(1 for _ in itertools.islice(cuts, num_buckets))
    if available == 0:
        raise RuntimeError("the training cuts are empty")
    if available < 2 or num_buckets < 2:
        return SimpleCutSampler(cuts, max_duration=max_duration, shuffle=shuffle, seed=seed)
    return DynamicBucketingSampler(cuts, max_duration=max_duration, num_buckets=available, shuffle=shuffle, seed=seed)
