"""Encoder pre-training on teacher embeddings (seed 002, stage 1) as an ESPnet task, trained by ESPnet's own
trainer like any `asr.sh` step (logs, resume, checkpoints, best-model selection).

    python -m k2d.mtkd.task --config conf/pretrain.yaml \\
        --train_data_path_and_name_and_type dump/pretrain/wav.scp,speech,sound \\
        --train_data_path_and_name_and_type dump/pretrain/whisper_base_l6.h5,whisper_base_l6,hdf5 \\
        --train_shape_file dump/pretrain/speech_shape --valid_... --output_dir exp/pretrain

The data directory comes from `python -m k2d.mtkd.data_dir` (audio, one HDF5 file per target,
targets.yaml). The student is ESPnet's own front end, normalisation and encoder (any of ESPnet's ASR
`--encoder` choices, Conformer by default, configured in YAML as in any ESPnet recipe). The model
(`--model encoder_kd`) puts one projection head per target (teacher x layer) on the encoder output; each
teacher's frames are matched to the student's rate by stacking (`stack` frames per student frame), optionally
shifted by `delta` frames (a streaming student predicts the past), and learnt by L1 + cosine regression
(`target_norm: utterance` first normalises each teacher dimension per utterance to mean 0, variance 1)
or, with `loss: codebook`, by cross-entropy against the index of the nearest k-means centroid (codebooks
fitted by `python -m k2d.mtkd.codebooks`). `weight` per target weighs the teachers. The encoder of the best
checkpoint initialises an ESPnet ASR model:
`python -m espnet2.bin.asr_train ... --init_param exp/pretrain/valid.loss.best.pth:encoder:encoder`.
"""

from __future__ import annotations

import argparse
import sys

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.tasks.abs_task import AbsTask
from espnet2.tasks.asr import encoder_choices, frontend_choices, normalize_choices, specaug_choices
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.trainer import Trainer

from k2d.mtkd.losses import (
    assign_codes,
    codebook_loss,
    l1_cosine_loss,
    normalize_per_utterance,
    shifted_pairs,
    stack_frames,
)


def load_codebooks(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


class EncoderKDModel(AbsESPnetModel):
    """A student encoder learning teacher embeddings: one head per target.

    targets: {name: {dim: D, stack: G, weight: w}}; the data must carry each name as a (frames, D) array."""

    def __init__(self, frontend: AbsFrontend | None, specaug, normalize, encoder: AbsEncoder, targets: dict,
                 loss: str = "regression", delta: int = 0, cosine: str = "linear", cosine_weight: float = 1.0,
                 codebooks: str | None = None, target_norm: str = "none"):
        super().__init__()
        if loss not in ("regression", "codebook"):
            raise ValueError(f"model_conf loss must be regression or codebook, got {loss!r}")
        if target_norm not in ("none", "utterance"):
            raise ValueError(f"model_conf target_norm must be none or utterance, got {target_norm!r}")
        if target_norm != "none" and loss == "codebook":
            raise ValueError("model_conf target_norm applies to loss regression only: codebooks are fitted on "
                             "the teachers' raw frames")
        if not targets:
            raise ValueError("model_conf targets is empty: name at least one teacher embedding to learn")
        self.frontend, self.specaug, self.normalize, self.encoder = frontend, specaug, normalize, encoder
        self.targets = {name: {"dim": int(t["dim"]), "stack": int(t.get("stack", 2)),
                               "weight": float(t.get("weight", 1.0))} for name, t in targets.items()}
        self.loss_kind, self.delta, self.cosine, self.cosine_weight = loss, delta, cosine, cosine_weight
        self.target_norm = target_norm
        size = encoder.output_size()
        if loss == "codebook":
            if codebooks is None:
                raise ValueError("loss codebook needs model_conf codebooks "
                                 "(a file made by python -m k2d.mtkd.codebooks)")
            books = load_codebooks(codebooks)
            missing = [name for name in self.targets if name not in books]
            if missing:
                raise ValueError(f"{codebooks} has no codebook for {', '.join(missing)}")
            for name in self.targets:  # buffers: saved in checkpoints, moved with the model
                self.register_buffer(f"codebook_{name}", books[name].float())
            outputs = {name: t["stack"] * books[name].shape[0] for name, t in self.targets.items()}
        else:
            outputs = {name: t["stack"] * t["dim"] for name, t in self.targets.items()}
        self.heads = torch.nn.ModuleDict({name: torch.nn.Linear(size, n) for name, n in outputs.items()})

    def encode(self, speech: torch.Tensor, speech_lengths: torch.Tensor):
        feats, lengths = (self.frontend(speech, speech_lengths) if self.frontend is not None
                          else (speech, speech_lengths))
        if self.specaug is not None and self.training:
            feats, lengths = self.specaug(feats, lengths)
        if self.normalize is not None:
            feats, lengths = self.normalize(feats, lengths)
        encoded, encoded_lengths, _ = self.encoder(feats, lengths)
        return encoded, encoded_lengths

    def forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs):
        encoded, lengths = self.encode(speech, speech_lengths)
        total, stats = 0.0, {}
        for name, target in self.targets.items():
            if name not in kwargs:
                raise RuntimeError(f"the batch has no {name!r} (data: {', '.join(k for k in kwargs)}); add "
                                   f"--train_data_path_and_name_and_type DIR/{name}.h5,{name},hdf5")
            frames, frame_lengths = kwargs[name].float(), kwargs[f"{name}_lengths"]
            if self.target_norm == "utterance":
                frames = normalize_per_utterance(frames, frame_lengths)
            frames, frame_lengths = stack_frames(frames, frame_lengths, target["stack"])
            prediction = self.heads[name](encoded)
            prediction, wanted, mask = shifted_pairs(prediction, lengths, frames, frame_lengths, self.delta)
            if self.loss_kind == "regression":
                loss, parts = l1_cosine_loss(prediction, wanted, mask, self.cosine, self.cosine_weight)
            else:
                book = getattr(self, f"codebook_{name}")
                codes = assign_codes(wanted.reshape(*wanted.shape[:2], target["stack"], -1), book)
                loss, parts = codebook_loss(prediction, codes, mask)
            total = total + target["weight"] * loss
            stats[f"loss_{name}"] = loss.detach()
            stats.update({f"{key}_{name}": value for key, value in parts.items()})
        stats["loss"] = total.detach()
        batch_size = speech.shape[0]
        return total, stats, torch.tensor(batch_size, device=speech.device)

    def collect_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs):
        feats, lengths = (self.frontend(speech, speech_lengths) if self.frontend is not None
                          else (speech, speech_lengths))
        return {"feats": feats, "feats_lengths": lengths}


model_choices = ClassChoices("model", classes=dict(encoder_kd=EncoderKDModel), type_check=AbsESPnetModel,
                             default="encoder_kd")


class EncoderKDTask(AbsTask):
    num_optimizers: int = 1
    # ESPnet's own ASR choices for the student's parts, so any ESPnet encoder config works here
    class_choices_list = [frontend_choices, specaug_choices, normalize_choices, encoder_choices, model_choices]
    trainer = Trainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related (k2d: encoder KD from teacher embeddings)")
        group.add_argument("--input_size", type=int, default=None, help="feature size when there is no frontend")
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)
        return parser

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool):
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=-1)

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool):
        return None

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> tuple[str, ...]:
        return ("speech",)

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> tuple[str, ...]:
        return ()  # the targets are named in model_conf: run with --allow_variable_data_keys true

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> EncoderKDModel:
        def part(choices: ClassChoices):  # a config file lists only what it sets
            name = getattr(args, choices.name, None)
            return None if name is None else choices.get_class(name)(**(getattr(args, f"{choices.name}_conf",
                                                                                 None) or {}))

        frontend = part(frontend_choices)
        input_size = frontend.output_size() if frontend is not None else args.input_size
        encoder = encoder_choices.get_class(args.encoder)(input_size=input_size, **(args.encoder_conf or {}))
        return model_choices.get_class(getattr(args, "model", "encoder_kd"))(
            frontend=frontend, specaug=part(specaug_choices), normalize=part(normalize_choices), encoder=encoder,
            **(args.model_conf or {}))


def main(cmd: list[str] | None = None) -> None:
    EncoderKDTask.main(cmd=cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
