"""An ESPnet checkpoint of the K²D student (k2d.espnet.asr_kd) as a Hugging Face Whisper directory, which
stage 6, the exports and transformers' ASR pipeline load.

    python -m k2d.espnet.to_hf --config exp/student_espnet/config.yaml \\
        --checkpoint exp/student_espnet/valid.loss.best.pth --out exp/student_espnet/hf
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
import yaml

from k2d.utils import setup_logging

log = logging.getLogger("k2d.espnet.to_hf")


def espnet_to_hf(config_path: Path, checkpoint: Path, out_dir: Path) -> Path:
    from k2d.models.student import create_student
    from k2d.models.whisper import load_whisper, save_model_dir

    config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    model_conf = config.get("model_conf") or {}
    teacher, processor = load_whisper(model_conf["teacher"], mix_lang_emb=model_conf.get("mix_lang_emb", False))
    student = create_student(teacher, list(model_conf.get("decoder_layers", [0, -1])), True,
                             model_conf.get("freeze_decoder_positions", True))
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    student_state = {k.removeprefix("student."): v for k, v in state.items() if k.startswith("student.")}
    missing, unexpected = student.load_state_dict(student_state, strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to the token embedding
    if missing or unexpected:
        raise RuntimeError(f"{checkpoint} does not fit the student of {config_path}: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    student.tie_weights()
    save_model_dir(student, processor, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="the ESPnet run's config.yaml")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a model checkpoint (*.pth) of that run")
    parser.add_argument("--out", type=Path, required=True, help="Hugging Face model directory to write")
    args = parser.parse_args(argv)
    try:
        espnet_to_hf(args.config, args.checkpoint, args.out)
    except (OSError, KeyError, RuntimeError) as error:
        log.error("%s", error)
        return 1
    log.info("student of %s in %s", args.checkpoint, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
