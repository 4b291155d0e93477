"""Stage 0: prepare a corpus's lhotse manifests (for mini_cs: synthesize the corpus first).

    python -m k2d.prepare --data-dir data/mini_cs --config egs/mini_cs/conf/prepare.yaml [--preparer mini_cs]

The preparer is the config's `preparer:` (a name under k2d.recipes, or a module path), else --preparer.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from k2d.config import ConfigError, add_config_arguments, load_yaml, parse_stage_args, save_config
from k2d.recipes import known_preparers, load_preparer
from k2d.utils import outputs_exist, setup_logging

log = logging.getLogger("k2d.prepare")


def get_parser(config_class=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preparer", help=f"corpus preparer ({', '.join(known_preparers())}, or a module path); "
                                           "default: the config's `preparer`")
    parser.add_argument("--data-dir", type=Path, required=True, help="output directory, e.g. data/mini_cs")
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs")
    parser.add_argument("--force", action="store_true", help="prepare again even if the outputs exist")
    if config_class is not None:
        add_config_arguments(parser, config_class)
    else:
        parser.add_argument("--config", type=Path, help="the prepare.yaml (its options depend on the preparer)")
    return parser


def chosen_preparer(argv: list[str] | None) -> str | None:
    """--preparer, else the `preparer:` of --config (read before the full parser, whose options depend on it)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preparer")
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    if known.preparer:
        return known.preparer
    if known.config is not None and known.config.is_file():
        return load_yaml(known.config).get("preparer")
    return None


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    try:
        name = chosen_preparer(argv)
        preparer = load_preparer(name) if name else None
    except (ConfigError, ValueError) as error:
        print(f"k2d.prepare: error: {error}", file=sys.stderr)
        return 2
    parser = get_parser(preparer.config_class if preparer else None)
    if preparer is None:
        parser.parse_args(argv)  # --help lists the generic options
        parser.error("no preparer: give --preparer, or `preparer:` in the --config file")
    args, config = parse_stage_args(parser, preparer.config_class, argv, ignore=("preparer",))
    if outputs_exist(*preparer.expected_outputs(args.data_dir, config)) and not args.force:
        log.info("stage 0 outputs exist in %s: skipping (use --force to redo)", args.data_dir)
        return 0
    started = time.time()
    log.info("preparing %s into %s with %d job(s)", preparer.corpus, args.data_dir, args.nj)
    try:
        preparer.prepare(args.data_dir, config, nj=args.nj)
    except (ValueError, FileNotFoundError, RuntimeError) as error:  # ConfigError is a ValueError
        log.error("%s", error)
        return 1
    save_config(config, args.data_dir / "prepare_config.yaml")
    log.info("stage 0 done in %.1f s: manifests in %s", time.time() - started, args.data_dir / "manifests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
