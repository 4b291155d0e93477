"""Stage 1: the teacher pseudo-labels long-form recordings with timestamped segments.

    python -m k2d.pseudo_label --recordings data/mini_cs/manifests/mini_cs_recordings_train_unlabelled.jsonl.gz \\
        --model egs/mini_cs/models/teacher --config egs/mini_cs/conf/pseudo_label.yaml \\
        --output data/mini_cs/pseudo/mini_cs_supervisions_train_unlabelled-pl.jsonl.gz

Writes one lhotse supervision per segment (with the teacher's mean token log-probability and no-speech
probability of the window it came from in `custom`), and OUTPUT's report (`..._report.yaml`: counts, skipped files
with reasons, hours). Resumable (progress per recording under OUTPUT's `.progress/` directory) and sharded:
`--shard i --num-shards N` (or one shard per torchrun rank); the last shard to finish merges.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from lhotse import SupervisionSegment, SupervisionSet
from tqdm import tqdm

from k2d.config import ConfigError, add_config_arguments, option, parse_stage_args, save_config
from k2d.inference.backends import recognizer_for
from k2d.inference.batched import MODES, transcribe_recordings
from k2d.inference.settings import GenerationSettings
from k2d.manifests import read_manifest
from k2d.models.names import resolve_model
from k2d.models.tokenizer import TIME_PRECISION
from k2d.models.whisper import add_device_argument
from k2d.progress import ShardJob, add_shard_arguments, run_sharded
from k2d.utils import atomic_path, setup_logging

log = logging.getLogger("k2d.pseudo_label")


@dataclass
class PseudoLabelConfig(GenerationSettings):
    mode: str = option(
        "sequential", "long-form decoding: sequential (openai's and the paper's: each window starts where the last "
        "complete segment ended; batch_size recordings side by side) or batched (faster-whisper's batched "
        "pipeline: VAD speech regions merged into windows, decoded independently, batch_size windows at a time)")
    batch_size: int = option(8, "sequential: recordings decoded side by side; batched: windows per batch", minimum=1)
    silence_rms: float = option(1e-4, "sequential: windows quieter than this RMS are not decoded", minimum=0)
    vad: bool = option(False, "sequential: voice activity detection (Silero), windows without speech are not "
                       "decoded (batched mode always uses it)")
    dtype: str = option("float32", "model dtype: float32, float16 or bfloat16")

    def __post_init__(self):
        super().__post_init__()
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")


def report_path(output: Path) -> Path:
    return output.parent / (output.name.split(".")[0] + "_report.yaml")


def lazy_recordings(path: Path):
    return read_manifest(path, "recordings")


def label(recognizer_factory, recordings: list, config: PseudoLabelConfig) -> Iterator[dict]:
    """Stage 1's work: one record per recording (its segments, or why it was skipped)."""
    recognizer = recognizer_factory()
    keys = {r.id: recording_key(r) for r in recordings}
    results = transcribe_recordings(recognizer, recordings, config, config.mode, config.batch_size,
                                    config.silence_rms, config.vad)
    for result in tqdm(results, total=len(recordings), desc="pseudo-label", unit="rec"):
        if result.error:
            log.warning("skipped %s: %s", result.recording_id, result.error)
        yield {"key": keys[result.recording_id], "id": result.recording_id, "error": result.error,
               "decoded_seconds": result.decoded_seconds,
               "skipped_seconds": result.skipped_seconds, "windows": result.windows, "fallbacks": result.fallbacks,
               "segments": [[round(s.start, 3), round(s.end, 3), s.text, round(s.avg_logprob, 4),
                             round(s.no_speech_prob, 4)] for s in result.segments]}


def segment_order_problems(segments: list[list]) -> tuple[int, int]:
    """(zero-length segments, segments that start before the previous one ended) of one recording's
    [start, end, text] list in decoding order; both must be 0 (one timestamp step of slack for rounding)."""
    zero_length = sum(1 for start, end, *_ in segments if end - start <= 0)
    ends, starts = [end for _, end, *_ in segments[:-1]], [start for start, *_ in segments[1:]]
    out_of_order = sum(1 for end, start in zip(ends, starts, strict=True) if start < end - TIME_PRECISION)
    return zero_length, out_of_order


def labelling_report(records: list[dict], audio_seconds: float, segments: int) -> dict:
    skipped = [{"recording": r["id"], "reason": r["error"]} for r in records if r["error"]]
    problems = [segment_order_problems(r["segments"]) for r in records]
    return {
        "recordings": len(records),
        "labelled": len(records) - len(skipped),
        "segments": segments,
        "zero_length_segments": sum(p[0] for p in problems),
        "out_of_order_segments": sum(p[1] for p in problems),
        "audio_hours": round(audio_seconds / 3600, 4),
        "decoded_hours": round(sum(r["decoded_seconds"] for r in records) / 3600, 4),
        "skipped_hours": round(sum(r.get("skipped_seconds", 0.0) for r in records) / 3600, 4),
        "windows": sum(r.get("windows", 0) for r in records),
        "fallback_windows": sum(r.get("fallbacks", 0) for r in records),
        "skipped": skipped,
    }


def merge(records: list[dict], recordings_path: Path, output: Path) -> None:
    """Stage 1's output from every recording's record: the supervisions manifest and its report."""
    started = time.time()
    supervisions = [
        SupervisionSegment(id=f"{record['id']}-pl{n:05d}", recording_id=record["id"], start=start,
                           duration=round(max(end - start, 0.0), 3), channel=0, text=text,
                           custom=dict(zip(("avg_logprob", "no_speech_prob"), confidence, strict=True)) or None)
        for record in records for n, (start, end, text, *confidence) in enumerate(record["segments"])
    ]
    with atomic_path(output) as tmp:
        SupervisionSet.from_segments(supervisions).to_file(tmp)
    report = labelling_report(records, sum(r.duration for r in lazy_recordings(recordings_path)), len(supervisions))
    with atomic_path(report_path(output)) as tmp:
        tmp.write_text(yaml.safe_dump(report, sort_keys=False, allow_unicode=True), encoding="utf-8")
    log.info(
        "stage 1: %d/%d recordings labelled, %d segments (%d zero-length, %d out of order), %.3f h of audio "
        "(%.3f h through the model) -> %s (merged in %.1f s)", report["labelled"], report["recordings"],
        report["segments"], report["zero_length_segments"], report["out_of_order_segments"], report["audio_hours"],
        report["decoded_hours"], output, time.time() - started,
    )
    if report["zero_length_segments"] or report["out_of_order_segments"]:
        log.warning("stage 1: the teacher's segments are not in time order: the labels are unreliable")
    for item in report["skipped"]:
        log.warning("skipped %s: %s", item["recording"], item["reason"])


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=Path, required=True, help="lhotse recordings manifest (long-form)")
    parser.add_argument("--model", required=True, help="teacher: Hugging Face id or local directory")
    parser.add_argument("--output", type=Path, required=True, help="supervisions manifest to write (.jsonl.gz)")
    add_device_argument(parser)
    add_shard_arguments(parser)
    add_config_arguments(parser, PseudoLabelConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args, config = parse_stage_args(get_parser(), PseudoLabelConfig, argv)
    save_config(config, args.output.parent / "pseudo_label_config.yaml")

    def recognizer():
        return recognizer_for(config, args.model, args.device)

    return run_sharded(
        ShardJob.from_args(args.output, args), items=lambda: lazy_recordings(args.recordings), key=recording_key,
        work=lambda todo: label(recognizer, todo, config),
        merge=lambda records, _: merge(records, args.recordings, args.output), stage="stage 1",
        inputs={"recordings": args.recordings, "teacher": resolve_model(args.model), "config": config},
        growing=("recordings",), retry=unreadable,
    )


def recording_key(recording) -> str:
    """A recording's progress key: its id, and what it is, so a changed file under the same id is redone."""
    return f"{recording.id}@{recording.num_samples}:{'|'.join(str(s.source) for s in recording.sources)}"


def unreadable(record: dict) -> bool:
    """A recording whose file could not be read is tried again on a rerun (it may have been restored)."""
    return bool(record.get("error")) and record["error"].startswith("unreadable")

if __name__ == "__main__":
    sys.exit(main())
