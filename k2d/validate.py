"""Stage 3: the validator transcribes every chunk; every distance to the teacher's label goes on the cut.

    python -m k2d.validate --cuts data/mini_cs/cuts/mini_cs_cuts_train_unlabelled-chunks.jsonl.gz \\
        --model egs/mini_cs/models/validator --config egs/mini_cs/conf/validate.yaml \\
        --output data/mini_cs/cuts/mini_cs_cuts_train_unlabelled-validated.jsonl.gz

Each output cut carries, in `custom` (k2d.cuts.ChunkFields): `validator_text` and `distances` = {mer, per,
teacher_loops, validator_loops, composite}, so stage 4 can filter by any metric and threshold without
decoding again. As the K2D authors ran Whisper-Base: with timestamps, a 448-token budget, and the text of
every generated text token; a continued chunk is heard only up to the end of its last complete segment
(the audio its label covers). Batched, resumable (one progress line per chunk) and sharded like stage 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lhotse import CutSet
from tqdm import tqdm

from k2d.audio import labelled_cut, load_cut_audio
from k2d.config import ConfigError, add_config_arguments, option, parse_stage_args, save_config
from k2d.cuts import ChunkFields, chunk_key, teacher_text
from k2d.inference.backends import recognizer_for
from k2d.inference.rules import compression_ratio
from k2d.inference.settings import GenerationSettings
from k2d.inference.transcribe import decode_windows
from k2d.manifests import read_manifest
from k2d.metrics.distances import distances
from k2d.models.names import resolve_model
from k2d.models.whisper import add_device_argument
from k2d.progress import ShardJob, add_shard_arguments, run_sharded
from k2d.text.phonemes import MANDARIN_SCHEMES
from k2d.utils import atomic_path, setup_logging

log = logging.getLogger("k2d.validate")


@dataclass
class ValidateConfig(GenerationSettings):
    max_new_tokens: int = option(448, "most tokens generated per chunk (the authors: max_length 448)", minimum=1)
    no_speech_threshold: float | None = option(
        None, "skip chunks the no-speech rule flags (null: never)", minimum=0, maximum=1)
    batch_size: int = option(16, "chunks per batch", minimum=1)
    dtype: str = option("float32", "model dtype: float32, float16 or bfloat16")
    ngram_n: int = option(6, "n of the character n-gram looping detector", minimum=1)
    ngram_max_count: int = option(5, "an n-gram occurring more than this many times is a loop", minimum=1)
    mandarin_phonemes: str = option("zhuyin", "PER units of Mandarin: zhuyin (the authors') or pinyin (initial+final)")
    second_validator: str = option(
        "", "a second validator (Hub id, directory or installed name): its distances are stored too, for the "
        "two_validators filter metric (empty: one validator)")

    def __post_init__(self):
        super().__post_init__()
        if self.mandarin_phonemes not in MANDARIN_SCHEMES:
            raise ConfigError(f"mandarin_phonemes must be one of {', '.join(MANDARIN_SCHEMES)}")


def lazy_cuts(path: Path):
    return read_manifest(path, "cuts")


def batches(items: list, size: int):
    for first in range(0, len(items), size):
        yield items[first : first + size]


def validate_chunks(recognizer_factory, cuts: list, config: ValidateConfig) -> Iterator[dict]:
    """Stage 3's work: the validator's transcript of each chunk (or why its audio could not be read), and
    the second validator's when there is one."""
    recognizer = recognizer_factory(None)
    second = recognizer_factory(config.second_validator) if config.second_validator else None
    with tqdm(total=len(cuts), desc="validate", unit="chunk") as bar:
        for batch in batches(cuts, config.batch_size):
            audios, readable = [], []
            for cut in batch:
                try:
                    audios.append(load_cut_audio(labelled_cut(cut)))
                    readable.append(cut)
                except Exception as error:  # a chunk whose audio cannot be read is reported, not fatal
                    log.warning("chunk %s: unreadable audio (%s): recorded as not validated", cut.id, error)
                    yield {"key": chunk_key(cut), "validator_text": None, "error": str(error)}
            results = decode_windows(recognizer, audios, config)
            seconds = decode_windows(second, audios, config) if second else [None] * len(readable)
            for cut, result, other in zip(readable, results, seconds, strict=True):
                yield {"key": chunk_key(cut), "validator_text": result.text, "error": None,
                       "second_validator_text": other.text if other else None}
            bar.update(len(batch))


def signals(fields: ChunkFields, teacher: str, second_text: str | None, config: ValidateConfig) -> dict:
    """The label-free signals stored beside the distances: the teacher's confidence (stage 1), the
    compression ratio of its text (loops compress well), and the second validator's distances."""
    found = {"compression_ratio": round(compression_ratio(teacher), 4), "teacher_logprob": fields.teacher_logprob,
             "teacher_no_speech": fields.teacher_no_speech}
    if second_text is not None:
        other = distances(teacher, second_text, config.ngram_n, config.ngram_max_count, config.mandarin_phonemes)
        found.update(mer_second=other.mer, composite_second=other.composite)
    return found


def merge(records: list[dict], cuts_path: Path, output: Path, config: ValidateConfig) -> None:
    """Stage 3's output: every chunk with the validator's transcript and every distance to its label."""
    started = time.time()
    counts = {"chunks": 0, "unreadable": 0, "empty_validator": 0, "teacher_loops": 0}
    with atomic_path(output) as tmp, CutSet.open_writer(tmp) as writer:
        for cut, record in zip(lazy_cuts(cuts_path), records, strict=True):
            counts["chunks"] += 1
            fields = ChunkFields.from_cut(cut)
            if fields is None:
                raise RuntimeError(f"{cuts_path}: cut {cut.id} is not a chunk cut of stage 2")
            if record["validator_text"] is None:  # unreadable: no transcript, so no distances; stage 4 drops it
                counts["unreadable"] += 1
                fields = fields.with_validation(None, None, record["error"])
            else:
                found = distances(teacher_text(cut), record["validator_text"], config.ngram_n, config.ngram_max_count,
                                  config.mandarin_phonemes)
                counts["empty_validator"] += not record["validator_text"].strip()
                counts["teacher_loops"] += found.teacher_loops
                fields = fields.with_validation(record["validator_text"], {**found.as_dict(), **signals(
                    fields, teacher_text(cut), record.get("second_validator_text"), config)})
                fields = dataclasses.replace(fields, second_validator_text=record.get("second_validator_text"))
            cut.custom = fields.to_custom()
            writer.write(cut)
    log.info(
        "stage 3: %d chunks with distances (%d unreadable, %d empty validator transcripts, %d looping teacher "
        "labels) -> %s (merged in %.1f s)", counts["chunks"], counts["unreadable"], counts["empty_validator"],
        counts["teacher_loops"], output, time.time() - started,
    )


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=Path, required=True, help="chunk cuts (stage 2 output)")
    parser.add_argument("--model", required=True, help="validator: Hugging Face id or local directory")
    parser.add_argument("--output", type=Path, required=True, help="validated cuts to write (.jsonl.gz)")
    add_device_argument(parser)
    add_shard_arguments(parser)
    add_config_arguments(parser, ValidateConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args, config = parse_stage_args(get_parser(), ValidateConfig, argv)
    save_config(config, args.output.parent / "validate_config.yaml")

    def recognizer(model: str | None):
        return recognizer_for(config, model or args.model, args.device)

    return run_sharded(
        ShardJob.from_args(args.output, args), items=lambda: lazy_cuts(args.cuts), key=chunk_key,
        work=lambda todo: validate_chunks(recognizer, todo, config),
        merge=lambda records, _: merge(records, args.cuts, args.output, config), stage="stage 3",
        inputs={"chunks": args.cuts, "validator": resolve_model(args.model), "config": config},
        growing=("chunks",), retry=lambda record: record["validator_text"] is None,
    )


if __name__ == "__main__":
    sys.exit(main())
