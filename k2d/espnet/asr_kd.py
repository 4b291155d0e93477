"""The K²D student as an ESPnet task: trained by ESPnet's own trainer, iterator, logging and checkpoints.

    python -m k2d.espnet.asr_kd --config conf/espnet_kd.yaml \\
        --train_data_path_and_name_and_type dump/train/wav.scp,speech,sound \\
        --train_data_path_and_name_and_type dump/train/text_ts,text,text \\
        --train_data_path_and_name_and_type dump/train/prompt,prompt,text \\
        --valid_data_path_and_name_and_type dump/valid/wav.scp,speech,sound \\
        --valid_data_path_and_name_and_type dump/valid/text_ts,text,text \\
        --train_shape_file dump/train/speech_shape --valid_shape_file dump/valid/speech_shape \\
        --output_dir exp/student_espnet --model_conf teacher=egs/mini_cs/models/teacher

Data come from stage 4's kept chunks written by `python -m k2d.espnet.data_dir --dump-audio` (wav.scp of
the labelled audio, `text_ts`: the label with timestamp tokens, `prompt`: the previous chunk's text). The
preprocessor (`--token_type whisper_hf`, the teacher's Whisper tokenizer) draws, per example, the label
with or without timestamps and with or without the <|startofprev|> prompt, as k2d's trainer does, and
gives the model the whole decoder sequence and where its loss starts. Model (`--model whisper_kd`): the
teacher's frozen encoder with chosen decoder layers, loss beta CE + gamma T^2 KL against the teacher, which
is kept out of the model's state so checkpoints hold the student only. Frontend (`--frontend
whisper_logmel`): Whisper's log-mel features. `python -m k2d.espnet.to_hf` turns a checkpoint into a
Hugging Face Whisper directory for stage 6 and the exports.
"""

from __future__ import annotations

import argparse
import random
import sys

import numpy as np
import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.trainer import Trainer
from espnet2.utils.types import str2bool

from k2d.audio import SAMPLE_RATE
from k2d.train.model import WhisperKDModel


class WhisperLogMel(AbsFrontend):
    """Whisper's log-mel front end: audio padded (or cut) to the model's window, `n_mels` bins."""

    def __init__(self, n_mels: int = 80, window_seconds: int = 30):
        super().__init__()
        from transformers import WhisperFeatureExtractor

        self.extractor = WhisperFeatureExtractor(feature_size=n_mels, chunk_length=window_seconds)

    def output_size(self) -> int:
        return self.extractor.feature_size

    def forward(self, input: torch.Tensor, input_lengths: torch.Tensor):  # noqa: A002 - ESPnet's name
        audio = [x[: int(n)].float().cpu().numpy() for x, n in zip(input, input_lengths, strict=True)]
        feats = self.extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features.to(input.device)
        return feats, torch.full((len(audio),), feats.shape[-1], device=input.device)


class ESPnetWhisperKD(WhisperKDModel):
    """The K²D student and its teacher, built from a teacher model directory (ESPnet's `model_conf`)."""

    def __init__(self, frontend: WhisperLogMel, teacher: str, decoder_layers=(0, -1), beta: float = 0.8,
                 gamma: float = 1.0, temperature: float = 2.0, freeze_decoder_positions: bool = True,
                 mix_lang_emb: bool = False):
        from k2d.models.student import create_student
        from k2d.models.whisper import load_whisper

        teacher_model, _ = load_whisper(teacher, mix_lang_emb=mix_lang_emb)
        student = create_student(teacher_model, list(decoder_layers), True, freeze_decoder_positions)
        super().__init__(student, teacher_model if gamma > 0 else None, beta=beta, gamma=gamma,
                         temperature=temperature, feature_extractor=frontend.extractor)
        if self.teacher is not None:
            # Out of the module tree: ESPnet's checkpoints and optimizer see the student only; the teacher
            # follows the batch's device at the first forward.
            teacher_model = self._modules.pop("teacher")
            object.__setattr__(self, "teacher", teacher_model)
        self.frontend = frontend

    def forward(self, speech, speech_lengths, text, text_lengths, text_loss_start=None, **kwargs):
        if self.teacher is not None and next(self.teacher.parameters()).device != speech.device:
            self.teacher.to(speech.device)
        if text_loss_start is not None:
            text_loss_start = text_loss_start.reshape(-1)
        return super().forward(speech, speech_lengths, text, text_lengths, text_loss_start=text_loss_start)


class WhisperLabels:
    """ESPnet preprocess_fn: timestamped text (and prompt) -> the whole decoder sequence of one example.

    Per example it draws timestamps (`timestamp_prob`) and the previous-text prompt (`prompt_prob`), as
    k2d's own trainer does; `text_loss_start` is where the loss begins (after the prompt and the forced
    <|startoftranscript|><|lang|><|task|>[<|notimestamps|>] prefix)."""

    def __init__(self, tokenizer_dir: str, language: str, timestamp_prob: float, prompt_prob: float,
                 window: float, train: bool):
        from transformers import WhisperTokenizer

        from k2d.models.names import resolve_model

        self.tokenizer = WhisperTokenizer.from_pretrained(resolve_model(tokenizer_dir))
        self.language, self.window, self.train = language, window, train
        self.timestamp_prob, self.prompt_prob = timestamp_prob, prompt_prob

    def __call__(self, uid: str, data: dict) -> dict:
        from k2d.espnet.data_dir import parse_timestamped
        from k2d.train.labels import build_decoder_labels

        rng = random.Random(uid) if not self.train else random
        timestamps = rng.random() < self.timestamp_prob
        prompt = data.pop("prompt", None)
        prompt = prompt if isinstance(prompt, str) and prompt.strip() and rng.random() < self.prompt_prob else None
        labels = build_decoder_labels(self.tokenizer, parse_timestamped(data["text"]), window=self.window,
                                      language=self.language, timestamps=timestamps, prompt_text=prompt)
        sequence = labels.input_ids + [labels.targets[-1]]
        start = len(labels.input_ids) - len(labels.targets) + next(
            i for i, t in enumerate(labels.targets) if t >= 0) + 1
        speech = data["speech"]
        return {"speech": speech.astype(np.float32) if speech.ndim == 1 else speech.mean(-1).astype(np.float32),
                "text": np.array(sequence, dtype=np.int64), "text_loss_start": np.array([start], dtype=np.int64)}


frontend_choices = ClassChoices("frontend", classes=dict(whisper_logmel=WhisperLogMel), type_check=AbsFrontend,
                                default="whisper_logmel")
model_choices = ClassChoices("model", classes=dict(whisper_kd=ESPnetWhisperKD), type_check=AbsESPnetModel,
                             default="whisper_kd")


class ASRKDTask(AbsTask):
    num_optimizers: int = 1
    class_choices_list = [frontend_choices, model_choices]
    trainer = Trainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related (k2d: K2D distillation)")
        group.add_argument("--token_type", type=str, default="whisper_hf", choices=["whisper_hf"],
                           help="whisper_hf: the teacher's Hugging Face Whisper tokenizer")
        group.add_argument("--tokenizer_dir", type=str, default=None,
                           help="where the tokenizer is (default: model_conf's teacher)")
        group.add_argument("--language", type=str, default="zh", help="language token of the labels")
        group.add_argument("--timestamp_prob", type=float, default=0.5, help="share of labels with timestamps")
        group.add_argument("--prompt_prob", type=float, default=0.2, help="share of labels with the prompt")
        group.add_argument("--window_seconds", type=float, default=30.0, help="the model's input window")
        group.add_argument("--use_preprocessor", type=str2bool, default=True, help="tokenize text")
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)
        return parser

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool):
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=-1, not_sequence=["text_loss_start"])

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool):
        tokenizer_dir = args.tokenizer_dir or (args.model_conf or {}).get("teacher")
        return WhisperLabels(tokenizer_dir, args.language, args.timestamp_prob, args.prompt_prob,
                             args.window_seconds, train)

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> tuple[str, ...]:
        return ("speech", "text")

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> tuple[str, ...]:
        return ("prompt",)

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetWhisperKD:
        frontend = frontend_choices.get_class(args.frontend)(**(args.frontend_conf or {}))
        return model_choices.get_class(args.model)(frontend=frontend, **(args.model_conf or {}))


def main(cmd: list[str] | None = None) -> None:
    ASRKDTask.main(cmd=cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
