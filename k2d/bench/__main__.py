"""python -m k2d.bench: the benchmarks' command line (k2d/bench/__init__.py lists them)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from k2d.bench import __doc__ as BENCH_DOC
from k2d.bench.labelling import bench_throughput, bench_vad
from k2d.bench.shapes import SHAPES, bench_shapes
from k2d.bench.streaming import bench_stream_train
from k2d.bench.training import TRAIN_MODES, bench_train, train_step_stats
from k2d.inference.settings import GenerationSettings
from k2d.models.names import resolve_model
from k2d.models.whisper import add_device_argument
from k2d.provenance import made_by
from k2d.runtimes import measure_runtimes, model_window, runtimes_header, runtimes_table, short_utterances
from k2d.speed import (
    hardware,
    measure_rtf,
    rtf_table,
    select_audio,
)
from k2d.utils import setup_logging


def bench_runtimes(args) -> str:
    model = resolve_model(args.model)
    audios, references = short_utterances(args.recordings, args.supervisions, args.utterances, model_window(model))
    threads = torch.get_num_threads()
    rows = measure_runtimes(model, args.exports_dir, audios, references, args.language, args.runs, threads)
    header = runtimes_header(rows, audios, args.runs, threads)
    return f"{hardware()}, {args.model}\n\n{header}\n\n{runtimes_table(rows)}"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m k2d.bench", description=BENCH_DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    train.add_argument("--rounds", type=int, default=1,
                       help="run every mode this many times, rounds interleaved; the table gives the median")
    train.add_argument("--before-code", help="a k2d checkout of an older commit (git worktree add DIR COMMIT)")
    train.add_argument("--before-modes", nargs="+", default=[],
                       help="modes to run first with --before-code's own code (the reference of the speed-ups)")
    stream = sub.add_parser("stream-train", help="training step time of streaming students (seed 003) by variant")
    stream.add_argument("--config", type=Path, required=True, help="the students' train.yaml")
    stream.add_argument("--data-dir", type=Path, required=True, help="an ESPnet ASR data dir (wav.scp, text)")
    stream.add_argument("--tokens", type=Path, required=True, help="the dir of tokens.txt and bpe.model")
    stream.add_argument("--rows", nargs="+", required=True,
                        help="NAME[:KEY=VALUE,...]: streaming_encoder_conf or model_conf options over the config's")
    stream.add_argument("--steps", type=int, default=5, help="batches timed per row and round")
    stream.add_argument("--rounds", type=int, default=3)
    stream.add_argument("--batch-seconds", type=float, default=50.0, help="audio per batch")
    stream.add_argument("--teacher-config", help="for rows with KD: the teacher's config.yaml")
    stream.add_argument("--teacher-model", help="for rows with KD: the teacher's checkpoint")
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
    through.add_argument("--labels-dir", type=Path, help="write each stage-1 row's labels (supervisions) here")
    through.add_argument("--ctranslate2-only", action="store_true",
                         help="only the rows a compute type changes (k2d's ctranslate2 backend, faster-whisper)")
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
    for p in (rtf, shapes, train, stream, one, through, vad, runtimes):
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
                            args.profile, args.rounds, args.before_code, args.before_modes)
    elif args.command == "stream-train":
        table = bench_stream_train(args.config, args.data_dir, args.tokens, args.rows, args.steps, args.rounds,
                                   args.batch_seconds, args.teacher_config, args.teacher_model, args.device)
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
                                 args.compute_type, ctranslate2_only=args.ctranslate2_only,
                                 labels_dir=args.labels_dir)
    table += "\n\n" + made_by()  # every benchmark table says which code and versions made it
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
