"""Training data: lhotse cuts (or composed windows) -> batches of log-mel features and decoder labels.

Random choices (timestamps shown or not, previous-text prompt or not) are drawn from a generator seeded by
(seed, epoch, example id), so a resumed run sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from lhotse import CutSet
from torch.utils.data import Sampler

from k2d.audio import SAMPLE_RATE, labelled_cut, load_cut_audio
from k2d.cuts import ChunkFields
from k2d.text.script import join_texts
from k2d.train.labels import IGNORE_INDEX, DecoderLabels, TimedText, build_decoder_labels


@dataclass
class LabelOptions:
    window: float
    language: str = "zh"
    task: str = "transcribe"
    timestamp_prob: float = 0.5
    prompt_prob: float = 0.2
    seed: int = 0


@dataclass
class Example:
    id: str
    audio: np.ndarray
    labels: DecoderLabels
    ctc_ids: list[int] | None  # CTC targets of the whole audio, None when part of the speech is unlabelled


@dataclass
class Batch:
    ids: list[str]
    features: torch.Tensor  # (B, n_mels, frames)
    audio_lengths: torch.Tensor  # (B,) samples
    input_ids: torch.Tensor  # (B, L)
    targets: torch.Tensor  # (B, L), IGNORE_INDEX where no loss
    ctc_targets: torch.Tensor  # (B, C), padded with 0
    ctc_lengths: torch.Tensor  # (B,), 0 where CTC does not apply

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.ids, *(t.to(device) for t in (self.features, self.audio_lengths, self.input_ids, self.targets)),
            self.ctc_targets.to(device), self.ctc_lengths.to(device),
        )

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
    timestamps = rng.random() < options.timestamp_prob
    use_prompt = prompt_text is not None and rng.random() < options.prompt_prob
    labels = build_decoder_labels(
        tokenizer, segments, window=options.window, language=options.language, task=options.task,
        timestamps=timestamps, prompt_text=prompt_text if use_prompt else None,
    )
    complete = all(s.end is not None for s in segments)
    text = join_texts([s.text for s in segments])
    ctc_units = ctc_units or (lambda t: tokenizer.encode(t, add_special_tokens=False))
    ctc_ids = ctc_units(text) if complete else None
    return Example(key, audio, labels, ctc_ids)


def cut_segments(cut) -> list[TimedText]:
    """The cut's supervisions as timed text relative to the cut; one running past the end is unfinished."""
    segments = []
    for sup in sorted(cut.supervisions, key=lambda s: s.start):
        if sup.start < -1e-3 or not (sup.text or "").strip():
            continue  # began before the cut: its text is not all in the audio
        end = sup.end if sup.end <= cut.duration + 1e-3 else None
        segments.append(TimedText(max(sup.start, 0.0), end, sup.text))
    return segments


def example_from_cut(cut, tokenizer, options: LabelOptions, epoch: int) -> Example:
    """A chunk cut from stage 2 (or a labelled utterance): continued chunks are trimmed to the last
    complete segment first, as the K2D authors do at training time."""
    fields = ChunkFields.from_cut(cut)
    cut = labelled_cut(cut)
    prev_text = fields.prev_text if fields is not None else None
    return make_example(cut.id, load_cut_audio(cut), cut_segments(cut), tokenizer, options, epoch, prev_text)


class Collator:
    """Examples -> Batch: Whisper log-mel features (padded to the window) and padded label tensors."""

    def __init__(self, feature_extractor, pad_id: int):
        self.feature_extractor = feature_extractor
        self.pad_id = pad_id

    def __call__(self, examples: list[Example]) -> Batch:
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
        return Batch(
            [e.id for e in examples], features, torch.tensor([e.audio.size for e in examples]),
            input_ids, targets, ctc_targets, ctc_lengths,
        )


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
