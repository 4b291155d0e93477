"""Check every stage config of a recipe before any stage runs, so a typo in distill.yaml fails in seconds,
not after hours of stages 1-3.

    python -m k2d.check_config --recipe mini_cs [--conf-dir egs/mini_cs/conf]
    python -m k2d.check_config --recipe mini_cs_mtkd --espnet       # the ESPnet recipes of seeds 002 and 003
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from k2d.config import ConfigError, build_config, load_yaml


def stage_configs() -> dict[str, type]:
    """Each stage config file a recipe may have, and the config class that reads it."""
    from k2d.chunking import ChunkConfig
    from k2d.decode import DecodeConfig
    from k2d.filtering import FilterConfig
    from k2d.layout import RecipeConfig
    from k2d.pseudo_label import PseudoLabelConfig
    from k2d.report import ReportConfig
    from k2d.train.config import DistillConfig
    from k2d.validate import ValidateConfig

    return {"recipe.yaml": RecipeConfig, "pseudo_label.yaml": PseudoLabelConfig, "chunk.yaml": ChunkConfig,
            "validate.yaml": ValidateConfig, "filter.yaml": FilterConfig, "distill.yaml": DistillConfig,
            "decode.yaml": DecodeConfig, "report.yaml": ReportConfig}


def check_conf_dir(conf_dir: Path, recipe: str) -> list[str]:
    """Every problem of the configs in CONF_DIR (empty when they are all usable)."""
    from k2d.recipes import load_preparer

    problems = []
    for name, config_class in stage_configs().items():
        path = conf_dir / name
        if not path.is_file():
            if name == "recipe.yaml":
                problems.append(f"{path} does not exist")
            continue
        try:
            build_config(config_class, load_yaml(path), f"config {path}")
        except ConfigError as error:
            problems.append(str(error))
    prepare = conf_dir / "prepare.yaml"
    if prepare.is_file():
        try:
            values = load_yaml(prepare)
            preparer = load_preparer(str(values.pop("preparer", recipe)))
            build_config(preparer.config_class, values, f"config {prepare}")
        except (ConfigError, ValueError) as error:
            problems.append(str(error))
    return problems + check_cmd_config(conf_dir)


def check_cmd_config(conf_dir: Path) -> list[str]:
    problems = []
    cmd = conf_dir / "cmd.yaml"
    if cmd.is_file():
        from k2d.launch import KINDS, read_cmd_config

        try:
            for kind in KINDS:
                read_cmd_config(cmd, kind)
        except ValueError as error:
            problems.append(str(error))
    return problems


def read_entries(path: Path) -> dict[str, str]:
    """NAME=VALUE lines (comments and blank lines skipped) of systems.txt / teachers.txt, as run.sh reads them;
    ValueError naming the line when one is not NAME=VALUE or a name comes twice."""
    entries = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        if not sep or not name or not value or " " in line:
            raise ValueError(f"{path}:{number}: {line!r} is not NAME=VALUE")
        if name in entries:
            raise ValueError(f"{path}:{number}: {name} is defined twice")
        entries[name] = value
    return entries


def check_espnet_conf(conf_dir: Path) -> list[str]:
    """The configs of an ESPnet recipe (seeds 002 and 003): data.yaml, every YAML a mapping, the systems and
    teachers lists well formed and every teacher a system names defined."""
    from k2d.espnet.recipe import DataConfig

    problems = []
    for path in sorted(conf_dir.glob("*.yaml")):
        try:
            values = load_yaml(path)
            if path.name == "data.yaml":
                build_config(DataConfig, values, f"config {path}")
        except ConfigError as error:
            problems.append(str(error))
    try:
        systems = read_entries(conf_dir / "systems.txt") if (conf_dir / "systems.txt").is_file() else {}
        teachers = read_entries(conf_dir / "teachers.txt") if (conf_dir / "teachers.txt").is_file() else None
    except ValueError as error:
        return problems + [str(error)]
    train = conf_dir / "train.yaml"
    model_conf = (load_yaml(train).get("model_conf") or {}) if teachers is None and train.is_file() else {}
    for name, spec in systems.items():
        # seed 003: KD:APC_SHIFT[:APC_ON][,KEY=VALUE...], each KEY the trainer's seed or a model_conf option
        options = spec.split(",")[1:] if teachers is None else []
        unset = [o for o in options if o.partition("=")[0] not in {"seed", *model_conf}]
        if unset:
            problems.append(f"{conf_dir / 'systems.txt'}: system {name} sets {', '.join(unset)}: not KEY=VALUE "
                            f"of seed or a model_conf option in {train}")
        named = spec.split(":", 1)[0].split(",")
        unknown = [t for t in named if teachers is not None and t != "none" and t not in teachers]
        if unknown:
            problems.append(f"{conf_dir / 'systems.txt'}: system {name} names teacher(s) {', '.join(unknown)}, "
                            f"which {conf_dir / 'teachers.txt'} does not define")
    return problems + check_cmd_config(conf_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True, help="the recipe (its name is the default preparer)")
    parser.add_argument("--conf-dir", type=Path, help="default: egs/RECIPE/conf")
    parser.add_argument("--espnet", action="store_true", help="an ESPnet recipe of seed 002 or 003")
    args = parser.parse_args(argv)
    conf_dir = args.conf_dir or Path("egs") / args.recipe / "conf"
    problems = check_espnet_conf(conf_dir) if args.espnet else check_conf_dir(conf_dir, args.recipe)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
