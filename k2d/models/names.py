"""Model names: where installed models live, and what a name given to a stage means (one owner).

    resolve_model("whisper-base")   # -> $K2D_MODELS/whisper-base (installed by install.sh)
    resolve_model("exp/x/teacher")  # -> a local directory as it is
    resolve_model("openai/whisper-large-v2")  # -> a Hub id as given
"""

from __future__ import annotations

import os
from pathlib import Path


def models_dir() -> Path:
    return Path(os.environ.get("K2D_MODELS", Path.home() / ".cache" / "k2d" / "models"))


def resolve_model(name_or_path: str) -> str:
    """A local path as it is; a name installed under models_dir() (e.g. whisper-base) as that directory;
    anything else as given (a Hub id)."""
    if Path(name_or_path).exists():
        return str(name_or_path)
    installed = models_dir() / str(name_or_path)
    return str(installed) if (installed / "config.json").is_file() else str(name_or_path)
