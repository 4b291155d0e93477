"""The steps of the ESPnet recipes (seed 002: egs/mini_cs_mtkd, seed 003: egs/mini_cs_streaming) that are not
model steps: their cut manifests of the mini_cs corpus, their ESPnet configs, their results tables and learning
curves. utils/espnet_recipe.sh and the recipes' run.sh call them; every model step is k2d.mtkd.embed, ESPnet's
trainer (k2d.mtkd.task, k2d.espnet.asr_train, k2d.streaming.task), k2d.espnet.decode_asr or k2d.streaming.stream.

    python -m k2d.espnet.recipe cuts --recipe mini_cs_mtkd --work-dir . --config conf/data.yaml
    python -m k2d.espnet.recipe config --student conf/student.yaml --stage conf/pretrain.yaml \\
        [--targets DIR/targets.yaml --teachers a,b] --output exp/.../pretrain.yaml
    python -m k2d.espnet.recipe results --exp-dir exp/mini_cs_mtkd --systems none,one,... \\
        [--curves exp/mini_cs_mtkd/learning_curves.png]
    python -m k2d.espnet.recipe best --run-dir exp/mini_cs_streaming/asr_teacher   # its best checkpoint
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from lhotse import CutSet, RecordingSet

from k2d.config import add_config_arguments, load_yaml, option
from k2d.layout import EspnetLayout, manifest_path
from k2d.manifests import read_manifest, utterance_cuts
from k2d.plots import plot_lines
from k2d.provenance import made_by
from k2d.utils import atomic_path, setup_logging

log = logging.getLogger("k2d.espnet.recipe")

STUDENT_FRAME_RATE = 25.0  # 10 ms features, 4x subsampling (ESPnet's conv2d input layer)
EPOCH_RESULTS = re.compile(r"(\d+)epoch results: .*\[valid\] (.*)$")  # ESPnet trainer's log line of an epoch


@dataclass
class DataConfig:
    labelled_utterances: int = option(1000, "train_labelled utterances: the fine-tuning data, and the "
                                            "pre-training audio", minimum=1)
    valid_utterances: int = option(60, "dev utterances for ESPnet's validation", minimum=1)
    extra_window: float = option(10.0, "seconds: train_unlabelled recordings cut into windows this long are the "
                                       "extra unlabelled audio", minimum=1.0)
    extra_recordings: int = option(16, "train_unlabelled recordings used as extra audio", minimum=0)


def make_cuts(config: DataConfig, layout: EspnetLayout) -> dict[str, int]:
    """The recipe's cut manifests: the labelled utterances (fine-tuning; their audio is also the
    pre-training audio), dev utterances (validation), and extra unlabelled audio in windows."""
    def manifest(kind: str, split: str) -> Path:
        return manifest_path(layout.manifests, layout.corpus, kind, split)

    def utterances(split: str, count: int) -> CutSet:
        return utterance_cuts(manifest("recordings", split), manifest("supervisions", split)).subset(first=count)

    finetune = utterances("train_labelled", config.labelled_utterances).to_eager()
    sets = {"finetune": finetune, "valid": utterances("dev", config.valid_utterances),
            "pretrain": finetune.drop_supervisions()}
    recordings = RecordingSet.from_recordings(read_manifest(manifest("recordings", "train_unlabelled"), "recordings"))
    extra = CutSet.from_manifests(recordings=recordings).subset(first=config.extra_recordings) \
        if config.extra_recordings else CutSet()
    sets["extra"] = extra.cut_into_windows(config.extra_window).filter(lambda c: c.duration >= 1.0) \
        if config.extra_recordings else extra
    counts = {}
    for name, cuts in sets.items():
        cuts = cuts.to_eager()
        with atomic_path(layout.cuts(name)) as tmp:
            cuts.to_file(tmp)
        counts[name] = len(cuts)
        log.info("%s: %d cuts, %.2f h -> %s", name, len(cuts), sum(c.duration for c in cuts) / 3600,
                 layout.cuts(name))
    return counts


def compose_config(student: Path, stages: list[Path], targets: Path | None = None,
                   teachers: list[str] | None = None, weights: dict[str, float] | None = None) -> dict:
    """An ESPnet config: the stages' options over the student's parts (front end, normalisation, encoder,
    shared by pre-training and fine-tuning: one owner), each stage file over the ones before it. With targets.yaml
    (k2d.mtkd.data_dir), model_conf.targets gets each target of `teachers` with its dim, frame stacking and weight."""
    config = load_yaml(student)
    for stage in stages:
        config.update(load_yaml(stage))
    if targets is not None:
        available = load_yaml(targets)
        chosen = {name: info for name, info in available.items()
                  if teachers is None or any(name.startswith(f"{t}_l") for t in teachers)}
        if not chosen:
            raise ValueError(f"{targets} has no target of teachers {teachers} (has: {', '.join(available)})")
        model_conf = dict(config.get("model_conf") or {})
        model_conf["targets"] = {
            name: {"dim": info["dim"], "stack": max(1, round(info["frame_rate"] / STUDENT_FRAME_RATE)),
                   "weight": (weights or {}).get(name.rsplit("_l", 1)[0], 1.0)} for name, info in chosen.items()}
        config["model_conf"] = model_conf
    return config


def results_table(exp_dir: Path, systems: list[str], test_sets: list[str], baseline: str) -> str:
    """MER per system and test set, with the relative reduction against `baseline` (no pre-training), and
    the spread of the baseline's seeds (systems named BASELINE_seedN) where there are several."""
    def mer(system: str, test_set: str) -> float | None:
        path = exp_dir / f"asr_{system}" / f"decode_{test_set}" / "scores.yaml"
        return yaml.safe_load(path.read_text())["mer"]["rate"] * 100 if path.is_file() else None

    seeds = [s for s in systems if s == baseline or s.startswith(f"{baseline}_seed")]

    header = "| system | " + " | ".join(f"{t} MER % | rel. vs {baseline}" for t in test_sets) + " |"
    lines = [header, "|" + "---|" * (1 + 2 * len(test_sets))]
    for system in systems:
        cells = []
        for test_set in test_sets:
            value, base = mer(system, test_set), mer(baseline, test_set)
            cells.append("-" if value is None else f"{value:.2f}")
            cells.append("-" if value is None or not base or system == baseline else f"{(base - value) / base:+.1%}")
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    spreads = []
    for test_set in test_sets:
        values = [v for v in (mer(s, test_set) for s in seeds) if v is not None]
        if len(values) > 1:
            spreads.append(f"{test_set} {max(values) - min(values):.2f}")
    if spreads:
        lines.append(f"\nSpread (max - min MER) of the {len(seeds)} seeds of {baseline}: {', '.join(spreads)}.")
    return "\n".join(lines) + "\n"


def espnet_validations(train_log: Path) -> list[dict]:
    """The validation statistics ESPnet's trainer logs each epoch ("Nepoch results: ... [valid] k=v, ..."),
    by epoch (a resumed run's repeated epoch: its last line)."""
    by_epoch = {}
    for line in train_log.read_text(encoding="utf-8", errors="replace").splitlines():
        found = EPOCH_RESULTS.search(line)
        if not found:
            continue
        stats = {"epoch": int(found.group(1))}
        for item in found.group(2).split(", "):
            key, _, value = item.partition("=")
            try:
                stats[key] = float(value)
            except ValueError:
                continue  # "time=0.99 seconds"
        by_epoch[stats["epoch"]] = stats
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def chosen_by(run_dir: Path) -> str:
    """The validation statistic an ESPnet run keeps its best checkpoint by (the first `best_model_criterion`
    of its config.yaml, e.g. loss or loss_asr; a minimum): its best checkpoint is RUN_DIR/valid.STAT.best.pth."""
    criteria = load_yaml(Path(run_dir) / "config.yaml").get("best_model_criterion") or [["valid", "loss", "min"]]
    phase, stat, mode = criteria[0]
    if (phase, mode) != ("valid", "min"):
        raise ValueError(f"{run_dir}: best_model_criterion {criteria[0]}: k2d's recipes choose by a validation "
                         "minimum")
    return stat


def best_checkpoint(run_dir: Path) -> Path:
    return Path(run_dir) / f"valid.{chosen_by(run_dir)}.best.pth"


def phase_runs(exp_dir: Path, system: str) -> list[Path]:
    """A system's ESPnet runs in order: exp/asr_SYSTEM_phase1 where fine-tuning has two phases (mini_cs_mtkd's
    run.sh), then exp/asr_SYSTEM (its final model; or a streaming model); those with a train.log."""
    runs = [exp_dir / f"asr_{system}_phase1", exp_dir / f"asr_{system}"]
    return [run for run in runs if (run / "train.log").is_file()]


def curves_table(exp_dir: Path, systems: list[str], path: Path) -> str:
    """Each system's ESPnet runs by epoch (a second phase continues the first's epochs), in the validation
    statistic each was chosen by, as a PNG at `path`, and where each run was best and stopped, as a table."""
    curves, rows, stats = {}, [], set()
    for system in systems:
        runs = phase_runs(exp_dir, system)
        epochs, values = [], []
        for phase, run in enumerate(runs, start=1):
            stat, records = chosen_by(run), espnet_validations(run / "train.log")
            if not records:
                continue
            stats.add(stat)
            offset = epochs[-1] if epochs else 0
            epochs += [offset + r["epoch"] for r in records]
            values += [r[stat] for r in records]
            best = min(records, key=lambda r: r[stat])
            name = f"{system}, phase {phase}" if len(runs) > 1 else system
            rows.append(f"| {name} | {records[-1]['epoch']} | {best['epoch']} | {stat} | {best[stat]:.3f} |")
        if epochs:
            curves[system] = (epochs, values)
    plot_lines(curves, "epoch (a second phase continues the first)",
               f"validation {' / '.join(sorted(stats))} (dev, log scale)", "training to the dev plateau", path,
               log_y=True)
    lines = ["| system | epochs trained | best epoch | chosen by | best validation value |", "|---|---|---|---|---|"]
    return "\n".join(lines + rows) + "\n"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    cuts = commands.add_parser("cuts", help="the recipe's cut manifests")
    cuts.add_argument("--recipe", required=True, help="the recipe whose cuts these are (k2d.layout.EspnetLayout)")
    cuts.add_argument("--work-dir", type=Path, default=Path("."), help="holds data/mini_cs/manifests and data/RECIPE")
    add_config_arguments(cuts, DataConfig)
    config = commands.add_parser("config", help="an ESPnet config from the student's and a stage's YAML")
    config.add_argument("--student", type=Path, required=True)
    config.add_argument("--stage", type=Path, action="append", required=True,
                        help="a stage's YAML; repeated, each file's options override the ones before")
    config.add_argument("--targets", type=Path, help="targets.yaml of the pre-training data")
    config.add_argument("--teachers", help="comma-separated teacher names to learn (default: all)")
    config.add_argument("--weight", action="append", default=[], metavar="TEACHER=W", help="a teacher's loss weight")
    config.add_argument("--output", type=Path, required=True)
    results = commands.add_parser("results", help="the MER table of every system")
    results.add_argument("--exp-dir", type=Path, required=True)
    results.add_argument("--systems", required=True, help="comma-separated, the baseline first")
    results.add_argument("--test-sets", default="test_in_short,test_ood_short")
    results.add_argument("--curves", type=Path, help="also plot each run's validation loss by epoch (PNG) and "
                                                     "tabulate where each run was best")
    results.add_argument("--made-by", action="store_true", help="end with the commit, versions and machine")
    best = commands.add_parser("best", help="print the best checkpoint of an ESPnet run (by its config's "
                                            "best_model_criterion)")
    best.add_argument("--run-dir", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    from k2d.config import ConfigError, parse_stage_args

    setup_logging()
    parser = get_parser()
    if argv is None:
        argv = sys.argv[1:]
    command = argv[0] if argv else None
    try:
        if command == "cuts":
            args, data = parse_stage_args(parser, DataConfig, argv)
            make_cuts(data, EspnetLayout(args.recipe, args.work_dir))
        elif command == "config":
            args = parser.parse_args(argv)
            weights = {k: float(v) for k, _, v in (w.partition("=") for w in args.weight)}
            teachers = args.teachers.split(",") if args.teachers else None
            config = compose_config(args.student, args.stage, args.targets, teachers, weights)
            with atomic_path(args.output) as tmp:
                tmp.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
        elif command == "best":
            print(best_checkpoint(parser.parse_args(argv).run_dir))
        else:
            args = parser.parse_args(argv)
            systems = args.systems.split(",")
            print(results_table(args.exp_dir, systems, args.test_sets.split(","), systems[0]), end="")
            if args.curves:
                print(f"\nTraining to the dev plateau ({args.curves.name}):\n")
                print(curves_table(args.exp_dir, systems, args.curves), end="")
            if args.made_by:
                print(f"\n{made_by()}")
    except (ConfigError, ValueError, FileNotFoundError) as error:
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
