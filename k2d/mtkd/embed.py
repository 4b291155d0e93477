"""Teacher embeddings for encoder distillation (seed 002, and seed 003's layer KD): chosen layers of one or
more teacher encoders for every cut of a manifest, stored once as float16.

    python -m k2d.mtkd.embed --cuts data/mini_cs/manifests/mini_cs_cuts_pretrain.jsonl.gz \\
        --teacher whisper_base=whisper-base:6 --teacher demo=egs/mini_cs/models/teacher:2,4 \\
        --output data/mini_cs_mtkd/embeddings/pretrain.jsonl.gz [--device cuda] [--shard I --num-shards N]

A teacher is NAME=MODEL:LAYERS. MODEL is a Whisper model (a Hub id, an installed name such as
`whisper-base`, or a directory; its encoder is used) or any transformers speech encoder directory
(wav2vec2, HuBERT, WavLM, ...: AutoModel, no remote code). LAYERS are hidden-state indices (0 = the input
of the first layer, L = the last layer's output). Each target NAME_lLAYER is a (frames, dim) array at the
teacher's frame rate (50 Hz for all of these), cut to the audio's length: a Whisper encoder sees its
window padded, and only the frames of real audio are kept; audio longer than the window is encoded window
by window.

Storage: lhotse `numpy_hdf5` arrays in block files under OUTPUT's `.embeddings/` directory, attached to the
cuts of OUTPUT as custom fields `embedding_<target>`, and `embeddings` = {target: {dim, frame_rate, teacher,
layer}}. Resumable (a block is written whole, then its cuts are recorded) and sharded like stage 1.
`python -m k2d.mtkd.data_dir` makes an ESPnet data directory of it.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet
from lhotse.array import Array
from tqdm import tqdm

from k2d.audio import SAMPLE_RATE, load_cut_audio
from k2d.manifests import read_manifest
from k2d.models.names import resolve_model
from k2d.models.whisper import add_device_argument, resolve_device
from k2d.progress import ShardJob, add_shard_arguments, run_sharded
from k2d.utils import array_block, atomic_path, setup_logging

log = logging.getLogger("k2d.mtkd.embed")

INFO_FIELD = "embeddings"


def embedding_field(target: str) -> str:
    return f"embedding_{target}"


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    model: str
    layers: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> TeacherSpec:
        """NAME=MODEL:L1,L2 (the layers after the last colon)."""
        name, sep, rest = text.partition("=")
        model, colon, layers = rest.rpartition(":")
        if not (sep and colon and name and model and layers):
            raise ValueError(f"--teacher {text!r}: expected NAME=MODEL:LAYERS, e.g. whisper_base=whisper-base:4,6")
        if not name.replace("_", "").isalnum():
            raise ValueError(f"--teacher {text!r}: NAME may have letters, digits and _ only")
        try:
            parsed = tuple(int(layer) for layer in layers.split(","))
        except ValueError:
            raise ValueError(f"--teacher {text!r}: LAYERS must be integers, e.g. 4,6") from None
        return cls(name, model, parsed)

    def targets(self) -> list[str]:
        return [target_name(self.name, layer) for layer in self.layers]


def target_name(teacher: str, layer: int) -> str:
    return f"{teacher}_l{layer}"


def embedding_targets(cut) -> dict[str, dict]:
    """The targets a cut of an embeddings manifest carries: {target: {dim, frame_rate, teacher, layer}}."""
    return dict((cut.custom or {}).get(INFO_FIELD) or {})


def load_embedding(cut, target: str) -> np.ndarray:
    array = (cut.custom or {}).get(embedding_field(target))
    if array is None:
        raise KeyError(f"cut {cut.id} has no embedding {target!r} (has: {', '.join(embedding_targets(cut))})")
    return array.load()


class SpeechEncoderTeacher:
    """A teacher's encoder: hidden states of chosen layers, per audio, at `frame_rate`."""

    def __init__(self, spec: TeacherSpec, device: str):
        from transformers import AutoConfig

        self.spec = spec
        self.device = resolve_device(device)
        source = resolve_model(spec.model)
        kind = AutoConfig.from_pretrained(source).model_type
        if kind == "whisper":
            from k2d.models.tokenizer import window_seconds
            from k2d.models.whisper import load_whisper

            model, processor = load_whisper(spec.model, device=str(self.device))
            self.encoder, self.extractor = model.get_encoder(), processor.feature_extractor
            self.window = window_seconds(model.config.max_source_positions)
            self.frame_rate = model.config.max_source_positions / self.window
            self.layers_total = model.config.encoder_layers
        else:
            from transformers import AutoFeatureExtractor, AutoModel

            self.encoder = AutoModel.from_pretrained(source).to(self.device).eval()
            self.extractor = AutoFeatureExtractor.from_pretrained(source)
            self.window = None
            stride = math.prod(self.encoder.config.conv_stride)
            self.frame_rate = SAMPLE_RATE / stride
            self.layers_total = self.encoder.config.num_hidden_layers
        self.whisper = kind == "whisper"
        bad = [layer for layer in spec.layers if not 0 <= layer <= self.layers_total]
        if bad:
            raise ValueError(f"teacher {spec.name} ({spec.model}) has hidden states 0-{self.layers_total}; "
                             f"layer(s) {bad} do not exist")

    @torch.no_grad()
    def embed(self, audios: list[np.ndarray]) -> list[dict[int, np.ndarray]]:
        """Per audio, {layer: (frames, dim) float16}, frames = the audio's length at the frame rate."""
        return self._embed_whisper(audios) if self.whisper else [self._embed_ssl(a) for a in audios]

    def _embed_whisper(self, audios: list[np.ndarray]) -> list[dict[int, np.ndarray]]:
        """All windows of all audios in one batch: the encoder pads each to its window anyway."""
        window = int(self.window * SAMPLE_RATE)
        pieces = [[audio[i : i + window] for i in range(0, max(len(audio), 1), window)] for audio in audios]
        flat = [piece for audio_pieces in pieces for piece in audio_pieces]
        features = self.extractor(flat, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        hidden = self.encoder(features.to(self.device, self.encoder.dtype), output_hidden_states=True).hidden_states
        out, row = [], 0
        for audio_pieces in pieces:
            rows = range(row, row + len(audio_pieces))
            frames = [max(1, math.ceil(len(piece) / SAMPLE_RATE * self.frame_rate)) for piece in audio_pieces]
            out.append({layer: np.concatenate([hidden[layer][r, :n].float().cpu().numpy()
                                               for r, n in zip(rows, frames, strict=True)]).astype(np.float16)
                        for layer in self.spec.layers})
            row += len(audio_pieces)
        return out

    def _embed_ssl(self, audio: np.ndarray) -> dict[int, np.ndarray]:
        inputs = self.extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        hidden = self.encoder(inputs.input_values.to(self.device), output_hidden_states=True).hidden_states
        return {layer: hidden[layer][0].float().cpu().numpy().astype(np.float16) for layer in self.spec.layers}

    def info(self, layer: int, dim: int) -> dict:
        return {"dim": dim, "frame_rate": self.frame_rate, "teacher": self.spec.model, "layer": layer}


def embed_block(teachers: list[SpeechEncoderTeacher], cuts: list, path: Path, batch_size: int) -> list[dict]:
    """Every teacher's targets for one block of cuts, in one HDF5 file; a progress record per cut."""
    records = []
    with array_block(path) as writer:
        for first in range(0, len(cuts), batch_size):
            batch = cuts[first : first + batch_size]
            audios = [load_cut_audio(cut) for cut in batch]
            batch_records = [{"key": cut.id, "file": str(path), "targets": {}} for cut in batch]
            for teacher in teachers:
                for cut, record, layers in zip(batch, batch_records, teacher.embed(audios), strict=True):
                    for layer, frames in layers.items():
                        target = target_name(teacher.spec.name, layer)
                        writer.write(f"{cut.id}/{target}", frames)
                        record["targets"][target] = {"shape": list(frames.shape),
                                                     **teacher.info(layer, frames.shape[1])}
            records += batch_records
    return records


def embed_cuts(specs: list[TeacherSpec], device: str, cuts: list, storage: Path, block_size: int,
               batch_size: int) -> Iterator[dict]:
    teachers = [SpeechEncoderTeacher(spec, device) for spec in specs]
    storage.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(cuts), desc="embed", unit="cut") as bar:
        for first in range(0, len(cuts), block_size):
            block = cuts[first : first + block_size]
            yield from embed_block(teachers, block, storage / f"block-{uuid.uuid4().hex[:16]}.h5", batch_size)
            bar.update(len(block))


def merge(records: list[dict], cuts, output: Path) -> None:
    with atomic_path(output) as tmp, CutSet.open_writer(tmp) as writer:
        for cut, record in zip(cuts, records, strict=True):
            custom = dict(cut.custom or {})
            info = {}
            for target, stored in record["targets"].items():
                custom[embedding_field(target)] = Array("numpy_hdf5", record["file"], f"{cut.id}/{target}",
                                                        stored["shape"])
                info[target] = {k: v for k, v in stored.items() if k != "shape"}
            custom[INFO_FIELD] = info
            cut.custom = custom
            writer.write(cut)
    log.info("embeddings of %d cut(s) (%s) -> %s", len(records),
             ", ".join(records[0]["targets"]) if records else "none", output)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=Path, required=True, help="lhotse cuts whose audio is embedded")
    parser.add_argument("--teacher", action="append", required=True, metavar="NAME=MODEL:LAYERS",
                        help="a teacher encoder and its layers (repeat for several teachers)")
    parser.add_argument("--output", type=Path, required=True, help="cuts with the embeddings (.jsonl.gz)")
    parser.add_argument("--block-size", type=int, default=64, help="cuts per HDF5 block file")
    parser.add_argument("--batch-size", type=int, default=8, help="cuts per forward pass")
    add_device_argument(parser)
    add_shard_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        specs = [TeacherSpec.parse(text) for text in args.teacher]
    except ValueError as error:
        parser.error(str(error))
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        parser.error(f"--teacher: each teacher needs its own NAME, got {names}")
    if args.block_size < 1 or args.batch_size < 1:
        parser.error("--block-size and --batch-size must be at least 1")
    storage = args.output.parent / ".embeddings" / args.output.name.split(".")[0]

    def cuts():
        return read_manifest(args.cuts, "cuts")

    return run_sharded(
        ShardJob.from_args(args.output, args), items=cuts, key=lambda cut: cut.id,
        work=lambda todo: embed_cuts(specs, args.device, todo, storage, args.block_size, args.batch_size),
        merge=lambda records, _: merge(records, cuts(), args.output), stage="embed",
        inputs={"cuts": args.cuts, "teachers": [[s.name, resolve_model(s.model), list(s.layers)] for s in specs]},
        growing=("cuts",),
    )


if __name__ == "__main__":
    sys.exit(main())
