"""Export a Whisper model directory (save_pretrained) to CTranslate2, the format faster-whisper loads.

    python -m k2d.export --model exp/mini_cs/export --out exp/mini_cs/export_ct2 --quantization int8

The output holds model.bin, vocabulary.json, tokenizer.json and the feature extractor's
preprocessor_config.json (faster-whisper reads the window length and mel bins from it, which matters for
models whose window is not 30 s, like the mini_cs demo models). Stage 7 runs this on the best student when
`ctranslate2_quantization` is set in conf/report.yaml.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from k2d.models.whisper import check_model_files
from k2d.utils import TEMPORARY_MARK, WRITER, setup_logging

log = logging.getLogger("k2d.export")

QUANTIZATIONS = ("float32", "float16", "bfloat16", "int8", "int8_float32", "int8_float16", "int16")


def export_ctranslate2(model_dir: Path, out_dir: Path, quantization: str = "int8") -> Path:
    """Convert `model_dir` into `out_dir` (replaced as a whole, so an existing output is always complete)."""
    from ctranslate2.converters import TransformersConverter
    from transformers import WhisperFeatureExtractor

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization {quantization!r} is not one of {', '.join(QUANTIZATIONS)}")
    from k2d.models.names import resolve_model

    model_dir, out_dir = Path(resolve_model(str(model_dir))), Path(out_dir)
    check_model_files(model_dir)
    for name in ("config.json", "generation_config.json"):
        try:
            json.loads((model_dir / name).read_text(encoding="utf-8")) if (model_dir / name).is_file() else None
        except json.JSONDecodeError as error:
            raise ValueError(f"{model_dir / name} is not valid JSON: {error}") from None
    tmp = out_dir.with_name(f"{out_dir.name}{TEMPORARY_MARK}{WRITER}")  # one per process
    shutil.rmtree(tmp, ignore_errors=True)
    TransformersConverter(str(model_dir), copy_files=["tokenizer.json"]).convert(str(tmp), quantization=quantization)
    WhisperFeatureExtractor.from_pretrained(model_dir).to_json_file(tmp / "preprocessor_config.json")
    copy_alignment_heads(model_dir, tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def copy_alignment_heads(model_dir: Path, ct2_dir: Path) -> None:
    """The converter looks alignment heads up by Hub model name and otherwise guesses; a student's own heads
    (k2d.models.student) live in its generation config, and that is what faster-whisper must read."""
    generation = json.loads((model_dir / "generation_config.json").read_text(encoding="utf-8"))
    heads = generation.get("alignment_heads")
    if heads:
        config_path = ct2_dir / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["alignment_heads"] = heads
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a save_pretrained Whisper directory")
    parser.add_argument("--out", type=Path, required=True, help="CTranslate2 output directory")
    parser.add_argument("--quantization", default="int8", choices=QUANTIZATIONS)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    try:
        export_ctranslate2(args.model, args.out, args.quantization)
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as error:  # json.JSONDecodeError: a ValueError
        log.error("cannot export %s: %s", args.model, error)
        return 1
    log.info("CTranslate2 model (%s) in %s", args.quantization, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
