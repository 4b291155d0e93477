"""Choose the filter's alpha on a small labelled dev set of the target domain, instead of taking the paper's.

    python -m k2d.calibrate --recipe mini_cs_whisper --teacher T --validator V \\
        --recordings data/X/manifests/mini_cs_recordings_dev_ood.jsonl.gz \\
        --supervisions data/X/manifests/mini_cs_supervisions_dev_ood.jsonl.gz --out-dir data/X/calibration \\
        [--conf-dir egs/mini_cs_whisper/conf] [--metric composite] [--target-mer 0.03] [--write]

Runs stages 1-3 on the dev recordings with the recipe's configs, then sweeps alpha for every filter metric
and reports, per alpha, the share of hours kept and the true pseudo-label MER of the kept chunks (a table,
sweep.yaml, and kept-hours-vs-label-error curves as PNG). The rule: the largest kept share whose kept-label
MER is at most the target; the default target is what the paper's alpha (0.4) gives on this dev set, so
the chosen alpha keeps as much as possible without labels worse than the paper's. With --write, alpha goes
into the recipe's filter.yaml with the evidence named beside it. Without a dev set, the paper's alpha stays.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

import yaml

from k2d.cuts import ChunkFields, teacher_text
from k2d.metrics.distances import METRICS, keep
from k2d.metrics.edit import ErrorCounts, error_counts
from k2d.plots import new_figure, save_plot
from k2d.text.units import text_units
from k2d.utils import atomic_path, setup_logging

log = logging.getLogger("k2d.calibrate")

ALPHAS = tuple(round(0.05 * i, 2) for i in range(21))  # 0.00, 0.05, ..., 1.00
PAPER_ALPHA = 0.4


def sweep(cuts, truth: dict, metrics: list[str], alphas=ALPHAS) -> dict:
    """{metric: {alpha: {"kept_percent", "kept_hours", "label_mer_kept"}}} over validated chunk cuts, with the
    true text of each chunk from `truth` (k2d.filtering.load_truth)."""
    from k2d.filtering import true_text

    chunks = []
    for cut in cuts:
        stored = ChunkFields.from_cut(cut).distances
        errors = error_counts(text_units(true_text(truth, cut)), text_units(teacher_text(cut)))
        chunks.append((stored, cut.duration, errors))  # hours as the filter report counts them
    total_hours = sum(seconds for _, seconds, _ in chunks) / 3600
    table: dict = {}
    for metric in metrics:
        table[metric] = {}
        for alpha in alphas:
            kept = [(s, e) for stored, s, e in chunks if stored is not None and keep(stored, metric, alpha)]
            hours = sum(s for s, _ in kept) / 3600
            errors = sum((e for _, e in kept), ErrorCounts())
            table[metric][alpha] = {"kept_percent": round(100 * hours / total_hours, 1) if total_hours else 0.0,
                                    "kept_hours": round(hours, 4),
                                    "label_mer_kept": round(errors.rate, 4) if kept else None}
    return table


def choose_alpha(curve: dict, target_mer: float) -> float | None:
    """The alpha keeping the most hours whose kept-label MER is at most the target (the smallest such alpha
    when several keep the same); None when no alpha reaches the target."""
    good = [(v["kept_hours"], -alpha, alpha) for alpha, v in curve.items()
            if v["label_mer_kept"] is not None and v["label_mer_kept"] <= target_mer]
    return max(good)[2] if good else None


def plot_curves(table: dict, chosen: tuple[str, float] | None, path: Path) -> None:
    fig, ax = new_figure()
    for metric, curve in table.items():
        points = [(v["kept_percent"], 100 * v["label_mer_kept"]) for v in curve.values()
                  if v["label_mer_kept"] is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=metric)
    if chosen:
        metric, alpha = chosen
        point = table[metric][alpha]
        ax.scatter([point["kept_percent"]], [100 * point["label_mer_kept"]], s=80, facecolors="none",
                   edgecolors="black", label=f"chosen: {metric} alpha {alpha}")
    save_plot(fig, ax, "hours kept (%)", "true pseudo-label MER of kept chunks (%)",
              "Filter calibration on the dev set", path)


def markdown(table: dict, metric: str, target: float, chosen: float | None) -> str:
    alphas = list(next(iter(table.values())))
    lines = [f"# Filter calibration (target: kept-label MER <= {100 * target:.2f}%; chosen {metric} alpha: "
             f"{chosen if chosen is not None else 'none reaches the target'})", "",
             "Hours kept % / true pseudo-label MER % of the kept chunks, per alpha:", "",
             "| alpha | " + " | ".join(table) + " |", "|---" * (len(table) + 1) + "|"]
    for alpha in alphas:
        cells = []
        for curve in table.values():
            v = curve[alpha]
            mer = "-" if v["label_mer_kept"] is None else f"{100 * v['label_mer_kept']:.2f}"
            cells.append(f"{v['kept_percent']:.1f} / {mer}")
        lines.append(f"| {alpha:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_alpha(filter_config: Path, alpha: float, evidence: Path) -> None:
    """Set `alpha` in a filter.yaml, saying where the evidence is."""
    text = filter_config.read_text(encoding="utf-8") if filter_config.is_file() else ""
    line = f"alpha: {alpha}   # calibrated on a labelled dev set: {evidence}"
    text = re.sub(r"^alpha:.*$", line, text, flags=re.M) if re.search(r"^alpha:", text, re.M) else text + line + "\n"
    filter_config.write_text(text, encoding="utf-8")


def run_stages(args, conf: Path) -> Path:
    """Stages 1-3 of the recipe's configs on the dev recordings; returns the validated chunks."""
    from k2d import chunking, pseudo_label, validate

    out = args.out_dir
    segments, chunks, validated = out / "dev-pl.jsonl.gz", out / "dev-chunks.jsonl.gz", out / "dev-validated.jsonl.gz"
    common = ["--device", args.device]
    steps = [
        (pseudo_label, ["--recordings", str(args.recordings), "--model", args.teacher, "--output", str(segments),
                        "--config", str(conf / "pseudo_label.yaml"), *common]),
        (chunking, ["--recordings", str(args.recordings), "--segments", str(segments), "--output", str(chunks),
                    "--config", str(conf / "chunk.yaml")]),
        (validate, ["--cuts", str(chunks), "--model", args.validator, "--output", str(validated),
                    "--config", str(conf / "validate.yaml"), *common]),
    ]
    for module, argv in steps:
        if module.main(argv) != 0:
            raise RuntimeError(f"{module.__name__} failed on the dev set (see above)")
    return validated


def main(argv: list[str] | None = None) -> int:
    from k2d.filtering import load_truth
    from k2d.manifests import read_manifest
    from k2d.models.whisper import add_device_argument

    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--conf-dir", type=Path, help="default: egs/RECIPE/conf")
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--validator", required=True)
    parser.add_argument("--recordings", type=Path, required=True, help="the labelled dev set's recordings")
    parser.add_argument("--supervisions", type=Path, required=True, help="its reference supervisions")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--metric", default="composite", choices=[m for m in METRICS if m not in ("none",)])
    parser.add_argument("--target-mer", type=float, help="default: the kept-label MER at the paper's alpha 0.4")
    parser.add_argument("--write", action="store_true", help="write the chosen alpha into the recipe's filter.yaml")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    conf = args.conf_dir or Path("egs") / args.recipe / "conf"
    try:
        validated = run_stages(args, conf)
    except (RuntimeError, FileNotFoundError) as error:
        log.error("%s", error)
        return 1
    cuts = list(read_manifest(validated, "cuts"))
    metrics = [m for m in METRICS if m != "none" and (m != "two_validators" or any(
        "composite_second" in (ChunkFields.from_cut(c).distances or {}) for c in cuts))]
    table = sweep(cuts, load_truth(args.supervisions), metrics)
    target = args.target_mer if args.target_mer is not None else table[args.metric][PAPER_ALPHA]["label_mer_kept"]
    chosen = choose_alpha(table[args.metric], target) if target is not None else None
    report = args.out_dir / "calibration.md"
    with atomic_path(report) as tmp:
        tmp.write_text(markdown(table, args.metric, target or 0.0, chosen), encoding="utf-8")
    with atomic_path(args.out_dir / "sweep.yaml") as tmp:
        tmp.write_text(yaml.safe_dump({"metric": args.metric, "target_mer": target, "chosen_alpha": chosen,
                                       "sweep": table}, sort_keys=False), encoding="utf-8")
    plot_curves(table, (args.metric, chosen) if chosen is not None else None, args.out_dir / "calibration.png")
    log.info("calibration: %s alpha %s (target kept-label MER %.4f) -> %s", args.metric, chosen, target or 0.0, report)
    if args.write and chosen is not None:
        write_alpha(conf / "filter.yaml", chosen, report)
        log.info("wrote alpha %s into %s", chosen, conf / "filter.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
