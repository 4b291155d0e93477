"""Small helpers every stage uses: logging set-up, atomic outputs, ids."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
TEMPORARY_MARK = ".tmp-"
WRITER = f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"  # host-pid of this process


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
    # Keep the real suffix (".jsonl.gz", ".flac") last: writers choose the format from it. The writer's host
    # and pid in the name let a later run remove what a killed writer left (remove_stray_temporaries).
    prefix = f".{final.name.split('.')[0]}{TEMPORARY_MARK}{WRITER}-"
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=prefix, suffix="".join(final.suffixes))
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes files private; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except (OSError, RuntimeError) as error:
        if not disk_full(error):
            raise
        raise DiskFullError(errno.ENOSPC, f"no space left on the device of {final.parent} while writing {final.name} "
                            f"({error}); nothing was lost: free some space and run the same command again") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


class DiskFullError(OSError):
    """An output could not be written for lack of space; the message names it."""


def disk_full(error: BaseException) -> bool:
    """ENOSPC (or EDQUOT), also when a library reported it as a bare RuntimeError (torch.save's writer)."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return "file write failed" in str(error) or "No space left" in str(error)


def outputs_exist(*paths: Path) -> bool:
    return all(Path(p).exists() for p in paths)


def format_hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


@contextlib.contextmanager
def array_block(path: Path):
    """A lhotse NumpyHdf5Writer whose file appears under `path` only when the block is written whole (the
    teacher cache's and the embeddings' block files)."""
    from lhotse.features.io import NumpyHdf5Writer

    tmp = Path(path).with_name(f"{Path(path).name}{TEMPORARY_MARK}{WRITER}")
    with NumpyHdf5Writer(tmp, mode="w") as writer:
        yield writer
    Path(str(tmp) + ".h5").rename(path)  # h5py names the file TMP.h5


def remove_stray_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary files a killed writer on this host left in `directory` (atomic_path, array_block):
    those whose writer process is gone. Another live process's files (a concurrent shard) are left alone."""
    host = socket.gethostname().replace("-", "_")
    removed = []
    for path in Path(directory).glob(f"*{TEMPORARY_MARK}{host}-*"):
        pid = path.name.split(f"{TEMPORARY_MARK}{host}-", 1)[1].split("-")[0].split(".")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class AlreadyRunning(RuntimeError):
    """Another process holds the lock of the work asked for."""


@contextlib.contextmanager
def exclusive(lock_file: Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` while `what` runs; a second process that asks for it while it
    is held gets AlreadyRunning naming the process that holds it (two runs of one shard would both do all
    its work and race on its files). With `wait`, the second process waits for the first instead."""
    import fcntl

    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            if wait:
                logging.getLogger(__name__).info("waiting for %s (%s) to finish %s", holder, lock_file, what)
                fcntl.flock(handle, fcntl.LOCK_EX)
            else:
                raise AlreadyRunning(f"{what} is already running ({holder}, lock {lock_file}): wait for it to end "
                                     "or stop it, then run again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16 or AMX); elsewhere autocast
    to bfloat16 would be emulated and slower than float32 (and results differ from a float32 machine's)."""
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
