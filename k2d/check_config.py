"""Check every stage config of a recipe before any stage runs, so a typo in distill.yaml fails in seconds,
not after hours of stages 1-3.

    python -m k2d.check_config --recipe mini_cs [--conf-dir egs/mini_cs/conf]
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
    cmd = conf_dir / "cmd.yaml"
    if cmd.is_file():
        from k2d.launch import KINDS, read_cmd_config

        try:
            for kind in KINDS:
                read_cmd_config(cmd, kind)
        except ValueError as error:
            problems.append(str(error))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True, help="the recipe (its name is the default preparer)")
    parser.add_argument("--conf-dir", type=Path, help="default: egs/RECIPE/conf")
    args = parser.parse_args(argv)
    problems = check_conf_dir(args.conf_dir or Path("egs") / args.recipe / "conf", args.recipe)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
