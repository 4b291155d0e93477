"""Stage 0: prepare a corpus's lhotse manifests (for mini_cs: synthesize the corpus first).

    python -m k2d.prepare --recipe mini_cs --data-dir data/mini_cs --config egs/mini_cs/conf/prepare.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from k2d.config import ConfigError, add_config_arguments, parse_stage_args, save_config
from k2d.recipes import RECIPES
from k2d.utils import outputs_exist, setup_logging

log = logging.getLogger("k2d.prepare")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True, choices=sorted(RECIPES), help="corpus to prepare")
    parser.add_argument("--data-dir", type=Path, required=True, help="output directory, e.g. data/mini_cs")
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs")
    parser.add_argument("--force", action="store_true", help="prepare again even if the outputs exist")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    pre = get_parser()
    known, _ = pre.parse_known_args(argv)
    config_class, prepare, module = RECIPES[known.recipe].load()
    parser = get_parser()
    add_config_arguments(parser, config_class)
    args, config = parse_stage_args(parser, config_class, argv)
    if outputs_exist(*module.expected_outputs(args.data_dir, config)) and not args.force:
        log.info("stage 0 outputs exist in %s: skipping (use --force to redo)", args.data_dir)
        return 0
    started = time.time()
    log.info("preparing %s into %s with %d job(s)", args.recipe, args.data_dir, args.nj)
    try:
        prepare(args.data_dir, config, nj=args.nj)
    except (ConfigError, FileNotFoundError, RuntimeError) as error:
        log.error("%s", error)
        return 1
    save_config(config, args.data_dir / "prepare_config.yaml")
    log.info("stage 0 done in %.1f s: manifests in %s", time.time() - started, args.data_dir / "manifests")
    return 0

if __name__ == "__main__":
    sys.exit(main())
