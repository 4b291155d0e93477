"""Bootstrap training of the demo's own teacher and validator on mini_cs `train_labelled` (outside the
default run: the trained weights ship in egs/mini_cs/models/, see egs/mini_cs/bootstrap.sh).

Training examples are windows composed on the fly from the short labelled utterances: a lead-in of pause,
silence or low noise, utterances separated by pauses, and often a last utterance cut by the window's end
(labelled with its start timestamp only, as Whisper's long-form decoding expects). An auxiliary CTC head
on the encoder makes attention training converge on two CPU cores; it is dropped at export.

    python -m k2d.bootstrap --data-dir data/mini_cs --config egs/mini_cs/conf/bootstrap_teacher.yaml \\
        --tokenizer-dir exp/mini_cs/bootstrap/tokenizer --out-dir exp/mini_cs/bootstrap/teacher \\
        --export-dir egs/mini_cs/models/teacher
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet, RecordingSet, SupervisionSet

from k2d.audio import SAMPLE_RATE
from k2d.config import ConfigError, add_config_arguments, option, parse_stage_args, save_config
from k2d.layout import manifest_path
from k2d.models.demo import DemoModelSpec, build_demo_whisper
from k2d.models.tokenizer import build_whisper_tokenizer, train_byte_bpe
from k2d.models.whisper import (
    add_device_argument,
    count_parameters,
    load_whisper,
    resolve_device,
    save_model_dir,
    shorten_window,
)
from k2d.recipes.mini_cs.audio import brown_noise, mix_at_snr, white_noise
from k2d.recipes.mini_cs.prepare import CORPUS
from k2d.text.phonemes import PhoneInventory
from k2d.train.data import Collator, LabelOptions, example_rng, make_example
from k2d.train.labels import TimedText
from k2d.train.model import WhisperKDModel
from k2d.train.trainer import TrainConfig, Trainer, init_distributed, rank
from k2d.train.validation import add_longform_validation_arguments, decode_mer, longform_validator
from k2d.utils import setup_logging

log = logging.getLogger("k2d.bootstrap")


@dataclass
class BootstrapConfig(DemoModelSpec, TrainConfig):
    vocab_size: int = option(1000, "byte-level BPE text tokens of the corpus tokenizer", minimum=1)
    ctc_weight: float = option(0.3, "weight of the auxiliary CTC loss on the encoder", minimum=0, maximum=1)
    ctc_units: str = option("phones", "CTC targets: phones (Mandarin initials/finals, English ARPAbet) or tokens")
    batch_size: int = option(16, "windows per batch", minimum=1)
    windows_per_epoch: int = option(4000, "composed windows per epoch", minimum=1)
    timestamp_prob: float = option(0.7, "share of windows labelled with timestamps", minimum=0, maximum=1)
    partial_prob: float = option(
        0.5, "share of windows whose last utterance is cut by the window end", minimum=0, maximum=1)
    noise_prob: float = option(0.3, "share of windows with added noise at 10-30 dB SNR", minimum=0, maximum=1)
    short_prob: float = option(
        0.3, "share of windows cut shortly after their last sentence (then padded)", minimum=0, maximum=1)
    valid_utterances: int = option(60, "dev utterances decoded at each validation", minimum=0)
    init_model: str = option(
        "", "adapt this Whisper model (Hub id, directory, or installed name such as whisper-base) instead of "
        "training the demo shape from scratch; its encoder keeps the first window_seconds of positions")


def subset(cls, config):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dataclasses.asdict(config).items() if k in names})


@dataclass
class Utterance:
    cut: object  # a MonoCut trimmed to the spoken sentence
    text: str


def load_utterances(data_dir: Path, split: str) -> list[Utterance]:
    manifests = Path(data_dir) / "manifests"
    recordings = RecordingSet.from_file(manifest_path(manifests, CORPUS, "recordings", split))
    supervisions = SupervisionSet.from_file(manifest_path(manifests, CORPUS, "supervisions", split))
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    out = []
    for cut in cuts:
        sup = cut.supervisions[0]
        speech = cut.truncate(offset=sup.start, duration=sup.duration, keep_excessive_supervisions=False)
        out.append(Utterance(speech, sup.text))
    return out


def compose_window(
    rng: random.Random, utterances: list[Utterance], window: float, partial_prob: float, noise_prob: float,
    short_prob: float = 0.0,
) -> tuple[np.ndarray, list[TimedText]]:
    """One training window of at most `window` seconds and its timed text (pure given the generator).

    With probability `short_prob` the audio ends shortly after its last complete sentence, so the feature
    extractor pads it with silence, as it does for chunks, single utterances and a recording's last window."""
    np_rng = np.random.default_rng(rng.getrandbits(63))
    length = int(window * SAMPLE_RATE)
    audio = np.zeros(length, dtype=np.float32)
    lead = rng.random()
    t = rng.uniform(0.0, 0.1) if lead < 0.15 else rng.uniform(0.1, 1.5) if lead < 0.85 else rng.uniform(1.5, 6.0)
    segments: list[TimedText] = []
    while t < window - 0.3:
        utt = rng.choice(utterances)
        speech = utt.cut.load_audio()[0]
        speech = speech / (np.max(np.abs(speech)) or 1.0) * rng.uniform(0.3, 0.9)
        start = int(t * SAMPLE_RATE)
        if start + speech.size > length:
            if rng.random() >= partial_prob:
                break
            audio[start:] = speech[: length - start]
            segments.append(TimedText(t, None, utt.text))
            break
        audio[start : start + speech.size] = speech
        segments.append(TimedText(t, t + speech.size / SAMPLE_RATE, utt.text))
        t += speech.size / SAMPLE_RATE + (rng.uniform(2.0, 5.0) if rng.random() < 0.08 else rng.uniform(0.2, 1.5))
    audio += white_noise(np_rng, length, rng.uniform(1e-4, 3e-3))
    if rng.random() < noise_prob and segments:
        noise = brown_noise(np_rng, length, 0.1) if rng.random() < 0.5 else white_noise(np_rng, length, 0.1)
        audio = mix_at_snr(audio, noise, rng.uniform(10.0, 30.0))
    complete = [s for s in segments if s.end is not None]
    if complete and rng.random() < short_prob:
        end = min(window, complete[-1].end + rng.uniform(0.05, 1.0))
        return audio[: int(end * SAMPLE_RATE)].astype(np.float32), complete
    return audio.astype(np.float32), segments


class WindowSampler:
    """Batches of window indices; an epoch is `windows_per_epoch` windows, split across DDP ranks."""

    def __init__(self, windows_per_epoch: int, batch_size: int, world_size: int = 1, rank_: int = 0):
        self.windows_per_epoch, self.batch_size = windows_per_epoch, batch_size
        self.world_size, self.rank = world_size, rank_

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        per_rank = self.batch_size * self.world_size
        for first in range(0, self.windows_per_epoch - per_rank + 1, per_rank):
            yield list(range(first + self.rank * self.batch_size, first + (self.rank + 1) * self.batch_size))


class WindowDataset(torch.utils.data.Dataset):
    def __init__(self, utterances, tokenizer, collator: Collator, options: LabelOptions, config: BootstrapConfig,
                 ctc_units=None):
        self.utterances, self.tokenizer, self.collator = utterances, tokenizer, collator
        self.options, self.config, self.ctc_units = options, config, ctc_units
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, indices: list[int]):
        examples = []
        for index in indices:
            key = f"window{index}"
            rng = example_rng(self.options.seed + 1, self.epoch, key)
            audio, segments = compose_window(
                rng, self.utterances, self.options.window, self.config.partial_prob, self.config.noise_prob,
                self.config.short_prob,
            )
            examples.append(
                make_example(key, audio, segments, self.tokenizer, self.options, self.epoch, ctc_units=self.ctc_units)
            )
        return self.collator(examples)


def corpus_tokenizer(data_dir: Path, tokenizer_dir: Path, vocab_size: int):
    """The demo tokenizer: load it if saved, else train it on the train_labelled text and save it."""
    from transformers import WhisperTokenizer

    if (tokenizer_dir / "tokenizer.json").exists():
        return WhisperTokenizer.from_pretrained(tokenizer_dir)
    texts = [u.text for u in load_utterances(data_dir, "train_labelled")]
    vocab, merges = train_byte_bpe(texts, vocab_size)
    tokenizer = build_whisper_tokenizer(vocab, merges)
    tokenizer.save_pretrained(tokenizer_dir)
    log.info("built a %d-token Whisper tokenizer from %d sentences -> %s", len(tokenizer), len(texts), tokenizer_dir)
    return tokenizer


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="mini_cs data directory (stage 0 output)")
    parser.add_argument("--tokenizer-dir", type=Path, required=True, help="corpus tokenizer (built if missing)")
    parser.add_argument("--out-dir", type=Path, required=True, help="training directory (checkpoints, logs)")
    parser.add_argument("--export-dir", type=Path, help="where to write the best model (float16 safetensors)")
    add_device_argument(parser)
    add_longform_validation_arguments(parser, "default: dev utterances, short-form")
    add_config_arguments(parser, BootstrapConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args, config = parse_stage_args(get_parser(), BootstrapConfig, argv)
    device = init_distributed(resolve_device(args.device))
    torch.manual_seed(config.seed)
    spec = subset(DemoModelSpec, config)
    if config.init_model:
        model, processor = load_whisper(config.init_model)
        shorten_window(model, processor, spec.window_seconds)
        tokenizer = processor.tokenizer
        log.info("adapting %s (window %d s), %.2fM parameters", config.init_model, spec.window_seconds,
                 count_parameters(model) / 1e6)
    else:
        tokenizer = corpus_tokenizer(args.data_dir, args.tokenizer_dir, config.vocab_size)
        model, processor = build_demo_whisper(spec, tokenizer)
        log.info("model: %s, %.2fM parameters", spec, count_parameters(model) / 1e6)
    save_config(config, args.out_dir / "train_config.yaml")
    options = LabelOptions(window=float(spec.window_seconds), timestamp_prob=config.timestamp_prob, prompt_prob=0.0,
                           seed=config.seed)
    collator = Collator(processor.feature_extractor, pad_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    utterances = load_utterances(args.data_dir, "train_labelled")
    # Phones are the easiest acoustic target: an encoder learns them long before it learns BPE tokens.
    ctc_units = PhoneInventory(u.text for u in utterances) if config.ctc_units == "phones" else None
    dataset = WindowDataset(utterances, tokenizer, collator, options, config, ctc_units)
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    sampler = WindowSampler(config.windows_per_epoch, config.batch_size, world, rank())
    try:
        validate = longform_validator(args, processor, "zh") if rank() == 0 else None
    except ConfigError as error:
        log.error("%s", error)
        return 1
    if validate is None:
        dev = [(u.cut.load_audio()[0], u.text)
               for u in load_utterances(args.data_dir, "dev")[: config.valid_utterances]]
        validate = lambda student: decode_mer(student, processor, dev)  # noqa: E731
    trainer = Trainer(
        WhisperKDModel(model, beta=1.0, gamma=0.0, ctc_weight=config.ctc_weight,
                       ctc_classes=len(ctc_units) if ctc_units else None),
        sampler,
        dataset,
        args.out_dir,
        subset(TrainConfig, config),
        device,
        validate=validate,
        save_best=lambda student, out: save_model_dir(student, processor, out),
    )
    trainer.fit()
    if args.export_dir is not None and rank() == 0:
        from transformers import WhisperForConditionalGeneration

        best = WhisperForConditionalGeneration.from_pretrained(args.out_dir / "best")
        save_model_dir(best, processor, args.export_dir, dtype=torch.float16)
        log.info("exported the best model (step %d) to %s", trainer.state.best_step, args.export_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
