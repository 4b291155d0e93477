"""What every ONNX export of k2d shares: the TorchScript exporter, metadata, int8 weights, and writing a whole
output directory at once (a killed export never leaves a half-written one)."""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch

from k2d.utils import TEMPORARY_MARK, WRITER

OPSET = 17
log = logging.getLogger("k2d.onnx_files")


def int8_name(name: str) -> str:
    return name.replace(".onnx", ".int8.onnx")


def trace_to_onnx(module: torch.nn.Module, inputs: tuple, path: Path, **names_and_axes) -> None:
    """The TorchScript exporter (the dynamo one needs onnxscript); its warnings are about the shapes it reads
    as constants (the window, the layer count), which is what we want."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, inputs, str(path), opset_version=OPSET, dynamo=False, **names_and_axes)


def add_metadata(path: Path, values: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))


def quantize_int8(directory: Path, names: tuple[str, ...]) -> None:
    """NAME.int8.onnx beside each NAME.onnx: matrix-product weights in int8, activations quantised on the fly
    (onnxruntime's dynamic quantisation)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # the quantiser logs every tensor it leaves alone to the root logger
    try:
        for name in names:
            quantize_dynamic(directory / name, directory / int8_name(name), op_types_to_quantize=["MatMul"],
                             weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)


@contextmanager
def replaced_directory(out_dir: Path):
    """Yields an empty temporary directory beside out_dir, which replaces out_dir when the block ends."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f"{out_dir.name}{TEMPORARY_MARK}{WRITER}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def run_export(export: Callable[[], Path], what: str) -> int:
    """A command line's exit status: 0 with the output's path logged, 1 with the reason it could not be made."""
    try:
        out = export()
    except (OSError, RuntimeError, ValueError) as error:
        log.error("%s", error)
        return 1
    log.info("%s written to %s", what, out)
    return 0
