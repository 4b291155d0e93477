"""Small helpers every stage uses: logging set-up, atomic outputs, ids."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, force=True)
    # Libraries that log every request or file at INFO drown a stage's own log.
    for noisy in ("httpx", "urllib3", "filelock", "matplotlib", "numba", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # transformers warns on every generate() call about arguments we set on purpose (max_new_tokens...).
    import transformers

    transformers.logging.set_verbosity_error()


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to `final`; on success rename it to `final`, on error remove it.

    A stage writes every output through this, so an output that exists is complete and a killed stage
    leaves no half-written file behind.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffix (".jsonl.gz", ".flac") last: writers choose the format from it.
    prefix = f".{final.name.split('.')[0]}.tmp-"
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=prefix, suffix="".join(final.suffixes))
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes files private; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def outputs_exist(*paths: Path) -> bool:
    return all(Path(p).exists() for p in paths)


def format_hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


@contextlib.contextmanager
def array_block(path: Path):
    """A lhotse NumpyHdf5Writer whose file appears under `path` only when the block is written whole (the
    teacher cache's and the embeddings' block files)."""
    from lhotse.features.io import NumpyHdf5Writer

    tmp = Path(path).with_name(Path(path).name + ".tmp")
    with NumpyHdf5Writer(tmp, mode="w") as writer:
        yield writer
    Path(str(tmp) + ".h5").rename(path)  # h5py names the file TMP.h5
