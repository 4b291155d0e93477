"""Stage 7: the results table in the shape of the K²D paper's Table 2, a speed benchmark, a plot, and the
exported best student.

    python -m k2d.report --exp-dir exp/mini_cs --models teacher=egs/mini_cs/models/teacher \\
        validator=egs/mini_cs/models/validator student_none=exp/mini_cs/student_none/best \\
        student_composite=exp/mini_cs/student_composite/best --test-sets test_in test_ood \\
        --bench-recordings data/mini_cs/manifests/mini_cs_recordings_test_in.jsonl.gz \\
        --filter-report data/mini_cs/filter_report/report.yaml

Reads exp/NAME/MODEL/decode_SET/scores.yaml (stage 6); writes exp/NAME/RESULTS.md, exp/NAME/results.yaml,
exp/NAME/mer_vs_speed.png, exp/NAME/export/ (the student with the lowest mean MER,
loadable by transformers' ASR pipeline), exp/NAME/export_ct2/ (the same for faster-whisper/CTranslate2) and
exp/NAME/export_onnx/ (for sherpa-onnx); with --bench-supervisions, a table of that student in every runtime.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from lhotse import RecordingSet

from k2d import provenance
from k2d.config import add_config_arguments, option, parse_stage_args
from k2d.export import QUANTIZATIONS, export_ctranslate2
from k2d.export_onnx import export_sherpa_onnx
from k2d.inference.settings import settings_from_file
from k2d.models.whisper import add_device_argument, load_whisper, save_model_dir
from k2d.plots import new_figure, plot_lines, save_plot
from k2d.runtimes import measure_runtimes, model_window, runtimes_header, runtimes_table, short_utterances
from k2d.speed import hardware, measure_rtf, rtf_table, select_audio
from k2d.utils import atomic_path, setup_logging

log = logging.getLogger("k2d.report")


@dataclass
class ReportConfig:
    bench_seconds: float = option(120.0, "seconds of test audio each model decodes per timed run", positive=True)
    bench_runs: int = option(5, "timed runs (after one warm-up) averaged for the real-time factor", minimum=1)
    bench_batch_size: int = option(8, "recordings decoded side by side in the benchmark", minimum=1)
    ctranslate2_quantization: str = option(
        "int8", "also convert the exported student for faster-whisper (export_ct2/) with this quantization; none: skip")
    onnx_export: bool = option(True, "also export the student for sherpa-onnx (export_onnx/: float32 and int8)")
    runtime_utterances: int = option(
        20, "utterances of the first test set the exported student decodes in every runtime (0: no runtimes table)",
        minimum=0)


def load_scores(exp_dir: Path, model: str, test_set: str) -> dict | None:
    path = exp_dir / model / f"decode_{test_set}" / "scores.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None


def kept_share(filter_report: dict | None, model: str) -> str:
    """'74%' for a student trained on the chunks a metric kept (student_METRIC, or student_METRIC_anything
    for another run of it, e.g. a second seed); '-' for teacher and validator."""
    if not model.startswith("student_") or filter_report is None:
        return "-"
    name = model.removeprefix("student_")
    metrics = [m for m in filter_report["metrics"] if name == m or name.startswith(m + "_")]
    summary = filter_report["metrics"][max(metrics, key=len)] if metrics else None
    return f"{summary['kept_percent']:.0f}%" if summary else "?"


def results_table(rows: list[dict], test_sets: list[str], reference: str = "teacher") -> str:
    """Markdown table: one row per model; MER per set with the relative change vs the reference model."""
    ref = next((r for r in rows if r["model"] == reference), rows[0])
    header = ["model", "parameters", "speed-up", "data kept", *(f"{s} MER %" for s in test_sets)]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for r in rows:
        cells = [r["model"], f"{r['parameters'] / 1e6:.2f}M", f"{r['speedup']:.2f}x", r["kept"]]
        for s in test_sets:
            mer, ref_mer = r["mer"].get(s), ref["mer"].get(s)
            if mer is None:
                cells.append("-")
            elif r is ref or not ref_mer:
                cells.append(f"{100 * mer:.2f}")
            else:
                cells.append(f"{100 * mer:.2f} ({100 * (mer - ref_mer) / ref_mer:+.1f}%)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detail_table(rows: list[dict], test_sets: list[str]) -> str:
    lines = ["| model | set | MER % | sub | del | ins | CER (zh) % | WER (en) % | hallucinations | loop events |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for s in test_sets:
            sc = r["scores"].get(s)
            if sc is None:
                continue
            m = sc["mer"]
            lines.append(
                f"| {r['model']} | {s} | {100 * m['rate']:.2f} | {m['substitutions']} | {m['deletions']} | "
                f"{m['insertions']} | {100 * sc['cer_mandarin']['rate']:.2f} | {100 * sc['wer_english']['rate']:.2f} | "
                f"{sc['hallucinations']}/{sc['utterances']} | {sc.get('hallucination_events', '-')} |"
            )
    return "\n".join(lines)


def plot_mer_vs_speed(rows: list[dict], test_sets: list[str], path: Path) -> None:
    fig, ax = new_figure()
    for s, marker in zip(test_sets, itertools.cycle("os^vD<>p")):
        points = [(r["speedup"], 100 * r["mer"][s], r["model"]) for r in rows if s in r["mer"]]
        ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, label=s)
        for x, y, name in points:
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    save_plot(fig, ax, "decoding speed-up vs teacher (x)", "MER %", "MER vs speed", path)


def learning_curves(exp_dir: Path, models: dict[str, str]) -> dict[str, list[dict]]:
    """Each student's validations (its validation.jsonl, the last record of each step: a resumed run
    validates a step again), in step order."""
    curves = {}
    for name in models:
        path = exp_dir / name / "validation.jsonl"
        if name.startswith("student_") and path.exists():
            by_step = {r["step"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines()) if r}
            curves[name] = [by_step[step] for step in sorted(by_step)]
    return curves


def plot_learning_curves(curves: dict[str, list[dict]], path: Path) -> None:
    """Validation MER against training steps, one line per student; a log scale, because a validation in
    which the student loops reads tens or hundreds of times its usual MER."""
    plot_lines({name: ([r["step"] for r in records], [100 * r["mer"] for r in records])
                for name, records in curves.items()},
               "training step", "validation MER % (dev, long-form; log scale)", "learning curves", path, log_y=True)


def curves_table(curves: dict[str, list[dict]]) -> str:
    lines = ["| student | step | training time | validation MER % | insertions | loop events |",
             "|---|---|---|---|---|---|"]
    for name, records in curves.items():
        for r in records:
            lines.append(f"| {name} | {r['step']} | {r.get('train_seconds', 0) / 60:.0f} min | {100 * r['mer']:.2f} | "
                         f"{r.get('insertions', '-')} | {r.get('loop_events', '-')} |")
    return "\n".join(lines)


def export_best(rows: list[dict], models: dict[str, str], test_sets: list[str], out_dir: Path) -> str | None:
    students = [r for r in rows if r["model"].startswith("student_") and all(s in r["mer"] for s in test_sets)]
    if not students:
        return None
    best = min(students, key=lambda r: sum(r["mer"][s] for s in test_sets) / len(test_sets))
    model, processor = load_whisper(models[best["model"]])
    save_model_dir(model, processor, out_dir)
    return best["model"]


def runtimes_report(exp_dir: Path, recordings: Path, supervisions: Path, count: int, settings, student: str) -> str:
    """The exported student in every runtime, on the first test set's utterances (the conversions it needs
    beyond export_onnx/ are made in a scratch directory and removed)."""
    model = exp_dir / "export"
    audios, references = short_utterances(recordings, supervisions, count, model_window(model))
    language = settings.language if settings else "zh"
    threads = torch.get_num_threads()
    onnx = exp_dir / "export_onnx"
    with tempfile.TemporaryDirectory(dir=exp_dir) as scratch:
        rows = measure_runtimes(model, Path(scratch), audios, references, language, threads=threads,
                                onnx_dir=onnx if onnx.is_dir() else None)
    return (f"## Runtimes ({student}, exported)\n\n" + runtimes_header(rows, audios, 1, threads) + "\n\n"
            + runtimes_table(rows))


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", type=Path, required=True, help="exp/NAME")
    parser.add_argument("--models", nargs="+", required=True, help="NAME=PATH pairs; the first is the reference")
    parser.add_argument("--test-sets", nargs="+", required=True)
    parser.add_argument("--bench-recordings", type=Path, required=True, help="recordings the speed benchmark decodes")
    parser.add_argument("--bench-supervisions", type=Path,
                        help="their supervisions: the utterances of the runtimes table (runtime_utterances)")
    parser.add_argument("--filter-report", type=Path, help="stage 4 report.yaml (data kept per metric)")
    parser.add_argument("--decode-config", type=Path,
                        help="stage 6's decode.yaml: the benchmark decodes as the test sets were decoded")
    add_device_argument(parser)
    parser.add_argument("--force", action="store_true", help="report again even if RESULTS.md exists")
    add_config_arguments(parser, ReportConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    parser = get_parser()
    args, config = parse_stage_args(parser, ReportConfig, argv)
    if not all("=" in item for item in args.models):
        parser.error("--models takes NAME=PATH pairs")
    if config.ctranslate2_quantization not in (*QUANTIZATIONS, "none"):
        parser.error(f"ctranslate2_quantization: {config.ctranslate2_quantization!r} is not none or one of "
                     f"{', '.join(QUANTIZATIONS)}")
    models = dict(item.split("=", 1) for item in args.models)
    results_md = args.exp_dir / "RESULTS.md"
    inputs = {"config": config, "filter_report": args.filter_report or "none",
              **{f"scores {m} {s}": args.exp_dir / m / f"decode_{s}" / "scores.yaml" for m in models
                 for s in args.test_sets}}
    if provenance.up_to_date(results_md, inputs, "stage 7", args.force):
        return 0
    missing = [f"{m}/decode_{s}" for m in models for s in args.test_sets if load_scores(args.exp_dir, m, s) is None]
    if missing:
        log.error("no scores for %s (run stage 6 first)", ", ".join(missing))
        return 1
    started = time.time()
    recordings = select_audio(RecordingSet.from_file(args.bench_recordings), config.bench_seconds)
    settings = settings_from_file(args.decode_config) if args.decode_config else None
    speed = measure_rtf(models, recordings, config.bench_runs, args.device, batch_size=config.bench_batch_size,
                        settings=settings)
    reference_rtf = speed[0]["rtf"]
    filter_report = None
    if args.filter_report and args.filter_report.exists():
        filter_report = yaml.safe_load(args.filter_report.read_text())
    rows = []
    for bench in speed:
        scores = {s: load_scores(args.exp_dir, bench["model"], s) for s in args.test_sets}
        rows.append({"model": bench["model"], "parameters": bench["parameters"], "rtf": bench["rtf"],
                     "speedup": reference_rtf / bench["rtf"], "kept": kept_share(filter_report, bench["model"]),
                     "scores": scores, "mer": {s: sc["mer"]["rate"] for s, sc in scores.items()}})
    plot_mer_vs_speed(rows, args.test_sets, args.exp_dir / "mer_vs_speed.png")
    curves = learning_curves(args.exp_dir, models)
    if curves:
        plot_learning_curves(curves, args.exp_dir / "learning_curves.png")
    exported = export_best(rows, models, args.test_sets, args.exp_dir / "export")
    ct2_note = ""
    if exported and config.ctranslate2_quantization != "none":
        export_ctranslate2(args.exp_dir / "export", args.exp_dir / "export_ct2", config.ctranslate2_quantization)
        ct2_note = (f"; `export_ct2/` = the same in CTranslate2 format ({config.ctranslate2_quantization}) "
                    "for faster-whisper")
    onnx_note, runtimes_section = "", []
    if exported and config.onnx_export:
        export_sherpa_onnx(args.exp_dir / "export", args.exp_dir / "export_onnx", int8=True)
        onnx_note = "; `export_onnx/` = the same for sherpa-onnx (float32, int8)"
    if exported and config.runtime_utterances and args.bench_supervisions:
        runtimes_section = [runtimes_report(args.exp_dir, args.bench_recordings, args.bench_supervisions,
                                            config.runtime_utterances, settings, exported)]
    bench_note = (f"Speed: long-form decoding of {speed[0]['audio_seconds']} s of {args.bench_recordings.name}, "
                  f"mean of {config.bench_runs} runs after a warm-up, all models in one process on {hardware()} "
                  f"({platform.node() or 'this machine'}), float32, batch {config.bench_batch_size}.")
    text = "\n\n".join([
        f"# Results: {args.exp_dir.name}",
        "MER % per test set (whole recordings decoded sequentially with timestamps; `_short`: each utterance "
        "on its own); in brackets the relative change vs the teacher. "
        "Data kept: share of the pseudo-labelled hours the student's filter kept.",
        results_table(rows, args.test_sets),
        bench_note,
        "## Details\n\n" + detail_table(rows, args.test_sets),
        "## Speed\n\n" + rtf_table(speed) + "\n\nEncoder share: the part of a model's decoding time spent in its "
        "encoder, which a student shares with its teacher: no smaller decoder takes that part away.",
        "![MER vs speed](mer_vs_speed.png)",
        *(["## Learning curves (the students' validations; best/ is the lowest)\n\n" + curves_table(curves),
            "![learning curves](learning_curves.png)"] if curves else []),
        *runtimes_section,
        f"Exported model: `export/` = {exported}{ct2_note}{onnx_note}" if exported else "No student to export.",
        provenance.made_by(),
    ]) + "\n"
    with atomic_path(args.exp_dir / "results.yaml") as tmp:
        tmp.write_text(yaml.safe_dump({"rows": [{k: v for k, v in r.items() if k != "scores"} for r in rows]},
                                      sort_keys=False), encoding="utf-8")
    with atomic_path(results_md) as tmp:
        tmp.write_text(text, encoding="utf-8")
    provenance.write_record(results_md, inputs)
    print(text)
    log.info("stage 7 done in %.1f s: %s", time.time() - started, results_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
