"""What each output was made from, so that a rerun notices changed inputs instead of skipping.

Next to every stage output lies `.OUTPUT.provenance.yaml` (for a directory output: `provenance.yaml` inside
it): a fingerprint of each input (manifests and models: their content; a Hub id: its name) and of the
resolved config. A rerun compares: unchanged -> skip; changed -> the stage processes the difference
(stages 1 and 3, whose work is recorded per item), makes the output again (cheap stages), or stops and says
which input changed and what to run (training).

    changed = changes(output, inputs)      # [] when the output is up to date
    write_record(output, inputs)           # after writing the output
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import zlib
from pathlib import Path

import yaml

from k2d.utils import cpu_supports_bf16

log = logging.getLogger(__name__)

# Bigger files are fingerprinted by size and modification time: hashing gigabytes of weights on every
# rerun would cost more than the check is worth.
HASHED_BYTES = 64 * 2**20


def fingerprint(value) -> str:
    """A file's or directory's content, a config's values, or a name (a Hub id) as itself."""
    if dataclasses.is_dataclass(value) or isinstance(value, dict):
        values = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        text = yaml.safe_dump(values, sort_keys=True, allow_unicode=True)
        return "config:" + hashlib.sha256(text.encode()).hexdigest()[:16]
    path = Path(str(value))
    if path.is_file():
        return "file:" + _file_digest(path)
    if path.is_dir():
        digest = hashlib.sha256()
        # A model directory (config.json beside its weights) is its own files: what is written into its
        # subdirectories later (stage 6's decode_SET/ when the teacher lives at exp/NAME/teacher) is not the model.
        files = path.glob("*") if (path / "config.json").is_file() else path.rglob("*")
        for file in sorted(p for p in files if p.is_file() and not p.name.startswith(".")):
            digest.update(f"{file.relative_to(path)}:{_file_digest(file)}\n".encode())
        return "dir:" + digest.hexdigest()[:16]
    return f"name:{value}"


def _file_digest(path: Path) -> str:
    """A gzip file (a lhotse manifest) by its uncompressed content: gzip headers hold the time of writing,
    so the same manifest written twice would look changed."""
    import gzip

    stat = path.stat()
    if stat.st_size > HASHED_BYTES:
        return f"{stat.st_size}-{stat.st_mtime_ns}"
    digest = hashlib.sha256()
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            for block in iter(lambda: f.read(2**20), b""):
                digest.update(block)
    except (EOFError, OSError, zlib.error):
        # a truncated or corrupt input counts as changed: the stage then reads it and names what is wrong
        return f"unreadable-{stat.st_size}-{stat.st_mtime_ns}"
    return digest.hexdigest()[:16]


def record_path(output: Path) -> Path:
    output = Path(output)
    return output / "provenance.yaml" if output.is_dir() else output.with_name(f".{output.name}.provenance.yaml")


def write_record(output: Path, inputs: dict) -> None:
    """Record the fingerprints of `inputs` ({name: path, model id or config}) for OUTPUT."""
    record = {name: fingerprint(value) for name, value in inputs.items()}
    record_path(output).write_text(yaml.safe_dump(record, sort_keys=True), encoding="utf-8")


def changes(output: Path, inputs: dict) -> list[str]:
    """The names of the inputs that differ from those OUTPUT was made from. An output made before records
    were kept (no record) counts as up to date: there is nothing to compare with."""
    path = record_path(output)
    if not path.is_file():
        return []
    recorded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return sorted(name for name, value in inputs.items() if recorded.get(name) != fingerprint(value))


def up_to_date(output: Path, inputs: dict, stage: str, force: bool = False) -> bool:
    """Whether a stage can skip: OUTPUT exists, no --force, and its inputs are those it was made from (a
    changed input is logged: the stage makes the output again)."""
    if force or not Path(output).exists():
        return False
    changed = changes(output, inputs)
    if changed:
        log.info("%s: %s changed since %s was made: making it again", stage, " and ".join(changed), output)
        return False
    log.info("%s exists: skipping %s (use --force to redo)", output, stage)
    return True


def made_by() -> str:
    """The commit, the key package versions and the machine that made a results file (its last line)."""
    import importlib.metadata
    import os
    import platform
    import subprocess

    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=here, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=here, check=True).stdout.strip()
        commit += " (with uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown (not a git checkout)"
    versions = []
    for package in ("torch", "transformers", "lhotse", "ctranslate2", "faster-whisper", "espnet"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    bf16 = "native" if cpu_supports_bf16() else "no native"
    machine = f"{platform.machine()} with {os.cpu_count()} CPU cores ({bf16} bfloat16)"
    return f"Made by k2d commit {commit}; {', '.join(versions)}; Python {platform.python_version()}; {machine}."
