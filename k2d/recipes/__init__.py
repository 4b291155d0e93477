"""Corpus preparers: one module per corpus with a `prepare_<corpus>()` that writes lhotse manifests.

Stage 0 finds a preparer by name (`mini_cs`, `ascend`: the module k2d.recipes.NAME, or its `prepare`
submodule) or by a dotted module path (a recipe's own module), so a new corpus needs no registry edit. The
module defines `PREPARER = Preparer(...)`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Preparer:
    corpus: str  # the manifests' prefix (lhotse naming: CORPUS_KIND_SPLIT.jsonl.gz)
    config_class: type
    prepare: Callable  # prepare(data_dir, config, nj=1) -> statistics
    expected_outputs: Callable[[Path, object], list[Path]]


def load_preparer(name: str) -> Preparer:
    candidates = [name] if "." in name else [f"k2d.recipes.{name}", f"k2d.recipes.{name}.prepare"]
    for module_name in candidates:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                continue
            raise
        if hasattr(module, "PREPARER"):
            return module.PREPARER
    raise ValueError(f"no corpus preparer {name!r}: expected a module {' or '.join(candidates)} defining PREPARER")


def known_preparers() -> list[str]:
    here = Path(__file__).parent
    names = [p.stem for p in here.glob("*.py") if p.stem not in ("__init__", "common", "public")]
    return sorted(names + [p.parent.name for p in here.glob("*/prepare.py")])
