"""Corpus recipes: one `prepare_<corpus>()` per corpus, registered here for stage 0 (`k2d.prepare`)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class RecipeEntry:
    """Where stage 0 finds a corpus's preparation: module, config class and prepare function names."""

    module: str
    config_class: str
    prepare: str

    def load(self):
        module = importlib.import_module(self.module)
        return getattr(module, self.config_class), getattr(module, self.prepare), module


RECIPES = {
    "mini_cs": RecipeEntry("k2d.recipes.mini_cs.prepare", "MiniCsConfig", "prepare_mini_cs"),
    "longform_dir": RecipeEntry("k2d.recipes.longform_dir", "LongformDirConfig", "prepare_longform_dir"),
    "ascend": RecipeEntry("k2d.recipes.ascend", "AscendConfig", "prepare_ascend"),
    "cszs": RecipeEntry("k2d.recipes.cszs", "CszsConfig", "prepare_cszs"),
    "ntuml2021": RecipeEntry("k2d.recipes.ntuml2021", "Ntuml2021Config", "prepare_ntuml2021"),
    "cv16_zhtw": RecipeEntry("k2d.recipes.cv16_zhtw", "Cv16ZhtwConfig", "prepare_cv16_zhtw"),
}
