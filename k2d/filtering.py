"""Stage 4: keep the chunks whose teacher label the validator agrees with (δ <= α), per filter metric.

    python -m k2d.filtering --cuts data/mini_cs/cuts/mini_cs_cuts_train_unlabelled-validated.jsonl.gz \\
        --output-pattern 'data/mini_cs/cuts/mini_cs_cuts_train_unlabelled-k2d_{metric}.jsonl.gz' \\
        --report-dir data/mini_cs/filter_report --metrics none,composite --alpha 0.4 \\
        [--truth data/mini_cs/truth/mini_cs_supervisions_train_unlabelled.jsonl.gz]

Writes one kept-cuts manifest per metric in --metrics, and a report covering all five metrics: chunks
and hours kept, histograms of the distances (PNG), and, when the true text is known (mini_cs), the
pseudo-label MER of kept vs dropped chunks, the direct measure of whether the filter works.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml
from lhotse import CutSet, SupervisionSet

from k2d import provenance
from k2d.audio import labelled_cut
from k2d.config import ConfigError, add_config_arguments, option, parse_stage_args, save_config
from k2d.cuts import ChunkFields, teacher_text
from k2d.manifests import ManifestError, read_manifest
from k2d.metrics.distances import METRICS, keep
from k2d.metrics.edit import ErrorCounts, error_counts
from k2d.text.script import join_texts
from k2d.text.units import text_units
from k2d.utils import atomic_path, outputs_exist, setup_logging

log = logging.getLogger("k2d.filtering")


@dataclass
class FilterConfig:
    metrics: list[str] = option(["composite"], "metrics to write kept cuts for: none, ngram, mer, per, composite")
    alpha: float = option(0.4, "keep a chunk when its distance is at most alpha", minimum=0)

    def __post_init__(self):
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ConfigError(f"unknown filter metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")


def true_text(truth: dict[str, list], cut) -> str:
    """The true transcript of a chunk: true utterances whose midpoint lies in the chunk's labelled span."""
    span_end = cut.start + labelled_cut(cut).duration
    return join_texts([
        s.text for s in truth.get(cut.recording_id, []) if cut.start <= (s.start + s.end) / 2 < span_end
    ])


def load_truth(path: Path | None) -> dict[str, list]:
    if path is None:
        return {}
    truth = defaultdict(list)
    for sup in SupervisionSet.from_jsonl_lazy(path):
        truth[sup.recording_id].append(sup)
    return truth


@dataclass
class MetricSummary:
    chunks_in: int = 0
    chunks_kept: int = 0
    hours_in: float = 0.0
    hours_kept: float = 0.0
    label_errors_kept: ErrorCounts | None = None
    label_errors_dropped: ErrorCounts | None = None

    def add(self, seconds: float, kept: bool, errors: ErrorCounts | None) -> None:
        self.chunks_in += 1
        self.hours_in += seconds / 3600
        if kept:
            self.chunks_kept += 1
            self.hours_kept += seconds / 3600
        if errors is not None:
            if kept:
                self.label_errors_kept += errors
            else:
                self.label_errors_dropped += errors

    def as_dict(self) -> dict:
        out = {
            "chunks_in": self.chunks_in,
            "chunks_kept": self.chunks_kept,
            "hours_in": round(self.hours_in, 4),
            "hours_kept": round(self.hours_kept, 4),
            "kept_percent": round(100 * self.hours_kept / self.hours_in, 1) if self.hours_in else 0.0,
        }
        if self.label_errors_kept is not None:  # None where no chunk is in that group
            kept, dropped = self.label_errors_kept, self.label_errors_dropped
            out["pseudo_label_mer_kept"] = round(kept.rate, 4) if self.chunks_kept else None
            out["pseudo_label_mer_dropped"] = round(dropped.rate, 4) if self.chunks_kept < self.chunks_in else None
        return out


SIGNALS = ("teacher_logprob", "teacher_no_speech", "compression_ratio", "composite_second")


def signal_means(kept: dict[str, list[float]], dropped: dict[str, list[float]]) -> dict:
    """Mean of each label-free signal over the chunks the composite keeps and those it drops."""
    def mean(values):
        return round(sum(values) / len(values), 4) if values else None

    return {name: {"kept": mean(kept[name]), "dropped": mean(dropped[name])} for name in SIGNALS
            if kept[name] or dropped[name]}


def filter_cuts(cuts, config: FilterConfig, outputs: dict[str, Path], truth: dict) -> tuple[dict, dict]:
    """Write kept cuts for each metric in `outputs`; summarise every metric. Returns (summaries, values),
    values holding each distance's values, and `signals` the label-free signals on kept vs dropped chunks."""
    summaries = {m: MetricSummary() for m in METRICS}
    if truth:
        for s in summaries.values():
            s.label_errors_kept, s.label_errors_dropped = ErrorCounts(), ErrorCounts()
    values = {"mer": [], "per": [], "composite": []}
    by_decision = {True: {name: [] for name in SIGNALS}, False: {name: [] for name in SIGNALS}}
    with contextlib.ExitStack() as stack:  # writers close before their atomic renames; all vanish on error
        writers = {
            metric: stack.enter_context(CutSet.open_writer(stack.enter_context(atomic_path(path))))
            for metric, path in outputs.items()
        }
        for cut in cuts:
            stored = ChunkFields.from_cut(cut).distances
            if stored is not None:
                for key in values:
                    values[key].append(stored[key])
                decision = by_decision[keep(stored, "composite", config.alpha)]
                for name in SIGNALS:
                    if stored.get(name) is not None:
                        decision[name].append(float(stored[name]))
            errors = error_counts(text_units(true_text(truth, cut)), text_units(teacher_text(cut))) if truth else None
            for metric, summary in summaries.items():
                kept = stored is not None and keep(stored, metric, config.alpha)
                summary.add(cut.duration, kept, errors)
                if kept and metric in writers:
                    writers[metric].write(cut)
    return {m: s.as_dict() for m, s in summaries.items()}, {**values,
                                                              "signals": signal_means(by_decision[True],
                                                                                      by_decision[False])}


def plot_histograms(values: dict[str, list[float]], alpha: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(values), figsize=(4 * len(values), 3.2), squeeze=False)
    for ax, (name, data) in zip(axes[0], values.items(), strict=True):
        ax.hist([min(v, 2.0) for v in data], bins=40, range=(0, 2.0), color="#4477aa")
        ax.axvline(alpha, color="#cc3311", linestyle="--", label=f"α = {alpha}")
        ax.set_title(f"{name.upper()} (teacher vs validator)")
        ax.set_xlabel("distance (clipped at 2)")
        ax.set_ylabel("chunks")
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def markdown_table(summaries: dict[str, dict], alpha: float) -> str:
    has_truth = "pseudo_label_mer_kept" in next(iter(summaries.values()))
    columns = ["metric", "chunks kept", "hours kept", "kept %"]
    if has_truth:
        columns += ["pseudo-label MER of kept", "of dropped"]
    lines = [f"# Filter report (alpha = {alpha})", "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for metric, s in summaries.items():
        row = (f"| {metric} | {s['chunks_kept']}/{s['chunks_in']} | {s['hours_kept']:.3f}/{s['hours_in']:.3f} "
               f"| {s['kept_percent']:.1f} |")
        if has_truth:
            row += "".join(f" {_percent(s[key])} |" for key in ("pseudo_label_mer_kept", "pseudo_label_mer_dropped"))
        lines.append(row)
    return "\n".join(lines) + "\n"


def signals_table(signals: dict) -> str:
    if not signals:
        return ""
    lines = ["", "Label-free signals, mean over the chunks the composite keeps and those it drops:", "",
             "| signal | kept | dropped |", "|---|---|---|"]
    lines += [f"| {name} | {v['kept']} | {v['dropped']} |" for name, v in signals.items()]
    return "\n".join(lines) + "\n"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=Path, required=True, help="validated cuts (stage 3 output)")
    parser.add_argument("--output-pattern", required=True, help="kept-cuts path with {metric} in it")
    parser.add_argument("--report-dir", type=Path, required=True, help="where the report and plots go")
    parser.add_argument("--truth", type=Path, help="true supervisions of the recordings (analysis only)")
    parser.add_argument("--force", action="store_true", help="filter again even if the outputs exist")
    add_config_arguments(parser, FilterConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    parser = get_parser()
    args, config = parse_stage_args(parser, FilterConfig, argv)
    if "{metric}" not in args.output_pattern:
        parser.error("--output-pattern must contain {metric}")
    outputs = {m: Path(args.output_pattern.format(metric=m)) for m in config.metrics}
    report = args.report_dir / "report.yaml"
    inputs = {"validated": args.cuts, "config": config, "truth": args.truth or "none"}
    if outputs_exist(*outputs.values()) and provenance.up_to_date(report, inputs, "stage 4", args.force):
        return 0
    if not args.cuts.is_file():
        log.error("validated cuts %s do not exist (run stage 3 first)", args.cuts)
        return 1
    try:
        summaries, values = filter_cuts(read_manifest(args.cuts, "cuts"), config, outputs, load_truth(args.truth))
        signals = values.pop("signals")
    except ManifestError as error:
        log.error("%s", error)
        return 1
    plot_histograms(values, config.alpha, args.report_dir / "distance_histograms.png")
    with atomic_path(args.report_dir / "report.md") as tmp:
        tmp.write_text(markdown_table(summaries, config.alpha) + signals_table(signals), encoding="utf-8")
    with atomic_path(report) as tmp:
        tmp.write_text(yaml.safe_dump({"alpha": config.alpha, "metrics": summaries, "signals": signals},
                                      sort_keys=False), encoding="utf-8")
    save_config(config, args.report_dir / "filter_config.yaml")
    provenance.write_record(report, inputs)
    for metric, s in summaries.items():
        extra = (f", pseudo-label MER kept {_percent(s['pseudo_label_mer_kept'])} vs dropped "
                 f"{_percent(s['pseudo_label_mer_dropped'])}") if "pseudo_label_mer_kept" in s else ""
        log.info("stage 4 %-9s kept %d/%d chunks, %.1f%% of %.3f h%s", metric, s["chunks_kept"], s["chunks_in"],
                 s["kept_percent"], s["hours_in"], extra)
    log.info("stage 4: kept cuts %s, report %s", ", ".join(map(str, outputs.values())), args.report_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
