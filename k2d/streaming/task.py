"""Streaming KD (seed 003) as an ESPnet task, trained by ESPnet's own trainer on an ASR data dir (wav.scp,
text, tokens from k2d.espnet.data_dir and k2d.espnet.tokens):

    python -m k2d.streaming.task --config conf/student.yaml --token_list tokens.txt --bpemodel bpe.model \\
        --train_data_path_and_name_and_type dump/train/wav.scp,speech,sound \\
        --train_data_path_and_name_and_type dump/train/text,text,text --train_shape_file ... --output_dir exp/x

The model: a front end whose frames never change when more audio arrives (`frontend: default`, ESPnet's
log-mel with `center: false`, or `kaldi_fbank`, sherpa-onnx's features: k2d.streaming.frontend),
ESPnet's conv2d subsampling (4x) and Transformer encoder layers under chunk-wise attention masks
(`chunk_size` frames, `left_chunks`; 0 = full context, the non-streaming teacher), and CTC (`head: ctc`) or a
transducer (`head: transducer`: a prediction network, ESPnet's LSTM or a stateless one over the last
`context_size` tokens (`prediction`), ESPnet's joint network, the RNN-T loss plus `ctc_weight` times the CTC
loss, as ESPnet's transducer ASR model; k2d.espnet.rnnt). With `kd` set, a frozen
full-context teacher of the same family (`teacher_config`, `teacher_model`: a model trained by this task with
chunk_size 0) is run on the same audio and the student learns, besides CTC:
- `token`: the teacher's per-frame token distribution (KL);
- `layer`: each `kd_layers` teacher layer, through a linear head on the streaming layer;
- `branch`: each such layer through an auxiliary non-streaming branch (linear, positional encoding, one
  full-attention Transformer layer, a one-layer unidirectional LSTM) that sees the same context as the teacher;
with `apc_shift` N > 0 a head also predicts the teacher layer N frames ahead (APC), read from the streaming layer
(`apc_on: stream`, which has not seen those frames) or from the branch's output (`apc_on: branch`).
Layer losses are L1 - log sigmoid(cosine), summed over frames like ESPnet's CTC loss. The teacher, heads and
branches exist in training only:
`python -m k2d.streaming.task export` writes the streaming model alone (k2d.streaming.stream decodes it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
import yaml
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.embedding import PositionalEncoding
from espnet.nets.pytorch_backend.transformer.encoder_layer import EncoderLayer
from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import PositionwiseFeedForward
from espnet.nets.pytorch_backend.transformer.subsampling import Conv2dSubsampling
from espnet2.asr.ctc import CTC
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.tasks.asr import ASRTask, preprocessor_choices
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices
from espnet2.utils.nested_dict_action import NestedDictAction

from k2d.espnet.rnnt import TransducerHead
from k2d.kaldi_text import read_text_file
from k2d.mtkd.losses import frame_mask, l1_cosine_loss
from k2d.streaming.frontend import frontend_choices
from k2d.streaming.kd import chunk_mask, frame_kl, future_pairs

log = logging.getLogger("k2d.streaming.task")
KD_KINDS = ("none", "token", "layer", "branch")
HEADS = ("ctc", "transducer")
APC_INPUTS = ("stream", "branch")  # what the APC head reads: the streaming layer or the branch's output
# model_conf the exported model keeps
HEAD_OPTIONS = ("head", "ctc_weight", "prediction", "context_size", "prediction_size", "joint_size")
TRAINING_ONLY = ("teacher.", "layer_heads.", "branches.", "apc_heads.")  # parameters the export drops
PROBE_UTTERANCES = 8  # validation utterances the export runs through the subsampling


def transformer_layer(size: int, heads: int, units: int, dropout: float) -> EncoderLayer:
    return EncoderLayer(size, MultiHeadedAttention(heads, size, dropout),
                        PositionwiseFeedForward(size, units, dropout), dropout, normalize_before=True)


def conv2d_subsampling(input_size: int, output_size: int, dropout: float, channels: int = 0) -> Conv2dSubsampling:
    """ESPnet's Conv2dSubsampling (two 3x3 convolutions of stride 2, a linear projection, the positional
    encoding) whose convolutions have `channels` channels instead of `output_size` (0). Its second
    convolution, output_size x output_size x 9 per output position, is most of a small model's step (a
    144-wide student: about 40%); icefall's subsampling is narrow for the same reason. The module keeps
    ESPnet's class and attributes (conv, out), which the streaming decoder and the exports read."""
    embed = Conv2dSubsampling(input_size, output_size, dropout)
    if channels and channels != output_size:
        embed.conv = torch.nn.Sequential(torch.nn.Conv2d(1, channels, 3, 2), torch.nn.ReLU(),
                                         torch.nn.Conv2d(channels, channels, 3, 2), torch.nn.ReLU())
        embed.out[0] = torch.nn.Linear(channels * (((input_size - 1) // 2 - 1) // 2), output_size)
    return embed


class ChunkedEncoder(torch.nn.Module):
    """Per-frame input LayerNorm (streaming-safe, unlike utterance mean/variance normalisation), ESPnet's conv2d
    subsampling (`subsampling_channels`: conv2d_subsampling) and Transformer layers under a chunk mask. forward
    returns every layer's output too."""

    def __init__(self, input_size: int, output_size: int = 144, attention_heads: int = 4, linear_units: int = 576,
                 num_blocks: int = 4, dropout_rate: float = 0.1, chunk_size: int = 8, left_chunks: int = -1,
                 subsampling_channels: int = 0):
        super().__init__()
        if subsampling_channels < 0:
            raise ValueError(f"streaming_encoder_conf subsampling_channels must be >= 0 (0: output_size, ESPnet's), "
                             f"got {subsampling_channels}")
        self.chunk_size, self.left_chunks, self.size = chunk_size, left_chunks, output_size
        self.input_norm = torch.nn.LayerNorm(input_size)
        self.embed = conv2d_subsampling(input_size, output_size, dropout_rate, subsampling_channels)
        self.layers = torch.nn.ModuleList(transformer_layer(output_size, attention_heads, linear_units, dropout_rate)
                                          for _ in range(num_blocks))
        self.after_norm = torch.nn.LayerNorm(output_size)

    def output_size(self) -> int:
        return self.size

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int | None = None):
        x, masks = self.embed(self.input_norm(feats), ~make_pad_mask(lengths, maxlen=feats.shape[1])[:, None, :].to(
            feats.device))
        out_lengths = masks.squeeze(1).sum(1)
        chunk = self.chunk_size if chunk_size is None else chunk_size
        attend = masks & chunk_mask(x.shape[1], chunk, self.left_chunks, x.device)[None]
        hidden = []
        for layer in self.layers:
            x, attend = layer(x, attend)
            hidden.append(x)
        return self.after_norm(x), out_lengths, hidden


class AuxiliaryBranch(torch.nn.Module):
    """A non-streaming view of a streaming layer (training only): linear, positional encoding, one Transformer
    layer with full attention, a one-layer unidirectional LSTM."""

    def __init__(self, size: int, out_size: int, heads: int, units: int, dropout: float):
        super().__init__()
        self.linear = torch.nn.Linear(size, size)
        self.position = PositionalEncoding(size, dropout)
        self.attention = transformer_layer(size, heads, units, dropout)
        self.lstm = torch.nn.LSTM(size, out_size, num_layers=1, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, _ = self.attention(self.position(self.linear(x)), mask[:, None, :])
        return self.lstm(x)[0]


class StreamingKDModel(AbsESPnetModel):
    def __init__(self, vocab_size: int, frontend: AbsFrontend, encoder: ChunkedEncoder,
                 teacher: StreamingKDModel | None = None, kd: str = "none", kd_layers: list[int] | tuple = (),
                 kd_weight: float = 1.0, kd_temperature: float = 1.0, apc_shift: int = 0, apc_weight: float = 1.0,
                 apc_on: str = "stream", head: str = "ctc", ctc_weight: float = 0.3, prediction: str = "lstm",
                 context_size: int = 2, prediction_size: int = 256, joint_size: int = 256):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"model_conf head must be one of {', '.join(HEADS)}, got {head!r}")
        if kd not in KD_KINDS:
            raise ValueError(f"model_conf kd must be one of {', '.join(KD_KINDS)}, got {kd!r}")
        if apc_on not in APC_INPUTS:
            raise ValueError(f"model_conf apc_on must be one of {', '.join(APC_INPUTS)}, got {apc_on!r}")
        if apc_shift and apc_on == "branch" and kd != "branch":
            raise ValueError(f"model_conf apc_on branch reads the auxiliary branches: it needs kd branch, not {kd}")
        if (kd != "none" or apc_shift) and teacher is None:
            raise ValueError(f"model_conf kd {kd} / apc_shift {apc_shift} need teacher_config and teacher_model")
        if kd in ("layer", "branch") or apc_shift:
            depth = min(len(encoder.layers), len(teacher.encoder.layers))
            if not kd_layers or [i for i in kd_layers if not 1 <= i <= depth]:
                raise ValueError(f"model_conf kd_layers must name layers 1..{depth} (student layer i learns "
                                 f"teacher layer i), got {list(kd_layers)}")
        self.frontend, self.encoder = frontend, encoder
        self.ctc = CTC(vocab_size, encoder.output_size())
        self.ctc_weight = ctc_weight
        self.transducer = (TransducerHead(vocab_size, encoder.output_size(), prediction_size, joint_size,
                                          encoder.layers[0].dropout.p, prediction, context_size)
                           if head == "transducer" else None)
        self.kd, self.kd_layers, self.kd_weight, self.kd_temperature = kd, [int(i) for i in kd_layers], kd_weight, \
            kd_temperature
        self.apc_shift, self.apc_weight, self.apc_on = apc_shift, apc_weight, apc_on
        self.teacher = teacher
        if teacher is not None:
            teacher.requires_grad_(False)
        size, layer = encoder.output_size(), encoder.layers[0]
        target = teacher.encoder.output_size() if teacher is not None else size  # the teacher's layer width
        names = [str(i) for i in self.kd_layers]
        if kd == "layer":
            self.layer_heads = torch.nn.ModuleDict({n: torch.nn.Linear(size, target) for n in names})
        if kd == "branch":
            heads, units = layer.self_attn.h, layer.feed_forward.w_1.out_features
            self.branches = torch.nn.ModuleDict({n: AuxiliaryBranch(size, target, heads, units, layer.dropout.p)
                                                 for n in names})
        if apc_shift:
            width = target if apc_on == "branch" else size
            self.apc_heads = torch.nn.ModuleDict({n: torch.nn.Linear(width, target) for n in names})

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen: no dropout
        return self

    def encode(self, speech: torch.Tensor, speech_lengths: torch.Tensor, chunk_size: int | None = None):
        feats, lengths = self.frontend(speech, speech_lengths)
        return self.encoder(feats, lengths, chunk_size)

    def forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor,
                text_lengths: torch.Tensor, **kwargs):
        encoded, lengths, hidden = self.encode(speech, speech_lengths)
        loss = self.ctc(encoded, lengths, text, text_lengths)
        stats = {"loss_ctc": loss.detach()}
        if self.transducer is not None:
            rnnt = self.transducer.loss(encoded, lengths, text)
            loss = rnnt + self.ctc_weight * loss
            stats["loss_transducer"] = rnnt.detach()
        # the recognition objective alone, the same for every system: the dev criterion (train.yaml), because the
        # total keeps falling with the distillation terms after the recognition part has begun to overfit
        stats["loss_asr"] = loss.detach()
        if self.teacher is not None:
            with torch.no_grad():
                t_encoded, t_lengths, t_hidden = self.teacher.encode(speech, speech_lengths)
            if t_encoded.shape[1] != encoded.shape[1]:
                raise RuntimeError(f"teacher frames {t_encoded.shape[1]} != student frames {encoded.shape[1]}: "
                                   "the teacher must use the same front end and subsampling")
            mask = frame_mask(lengths, encoded.shape[1])
            # ESPnet's CTC loss is a sum over each utterance: the KD terms (means over frames) are summed over
            # frames too, so that their weights do not change with the utterance length
            scale = mask.sum() / speech.shape[0]
            if self.kd == "token":
                kl = frame_kl(self.teacher.ctc.ctc_lo(t_encoded), self.ctc.ctc_lo(encoded), mask, self.kd_temperature)
                loss = loss + self.kd_weight * scale * kl
                stats["loss_kd"] = kl.detach()
            for i in self.kd_layers:
                student, teacher = hidden[i - 1], t_hidden[i - 1]
                source = student  # what the APC head reads
                if self.kd in ("layer", "branch"):
                    predicted = (self.layer_heads[str(i)](student) if self.kd == "layer"
                                 else self.branches[str(i)](student, mask))
                    source = predicted if self.apc_on == "branch" else student
                    part, parts = l1_cosine_loss(predicted, teacher, mask, cosine="logsigmoid")
                    loss = loss + self.kd_weight * scale * part
                    stats[f"loss_kd_l{i}"], stats[f"cos_l{i}"] = part.detach(), parts["cos"]
                if self.apc_shift:
                    predicted, wanted, apc_mask = future_pairs(self.apc_heads[str(i)](source), lengths, teacher,
                                                               t_lengths, self.apc_shift)
                    part, _ = l1_cosine_loss(predicted, wanted, apc_mask, cosine="logsigmoid")
                    loss = loss + self.apc_weight * scale * part
                    stats[f"loss_apc_l{i}"] = part.detach()
        stats["loss"] = loss.detach()
        return loss, stats, torch.tensor(speech.shape[0], device=speech.device)

    def collect_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs):
        feats, lengths = self.frontend(speech, speech_lengths)
        return {"feats": feats, "feats_lengths": lengths}


model_choices = ClassChoices("model", classes=dict(streaming_kd=StreamingKDModel), type_check=AbsESPnetModel,
                             default="streaming_kd")


class StreamingKDTask(ASRTask):
    """ESPnet's ASR task (data, tokens, preprocessing, trainer) with k2d's streaming model."""

    class_choices_list = [frontend_choices, model_choices, preprocessor_choices]

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        group = parser.add_argument_group(description="k2d streaming encoder")
        group.add_argument("--streaming_encoder_conf", action=NestedDictAction, default={},
                           help="ChunkedEncoder options: output_size, attention_heads, linear_units, num_blocks, "
                                "dropout_rate, chunk_size, left_chunks, subsampling_channels")
        group.add_argument("--teacher_config", type=str, default=None, help="the KD teacher's config.yaml")
        group.add_argument("--teacher_model", type=str, default=None, help="the KD teacher's checkpoint (.pth)")
        return parser

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> StreamingKDModel:
        if isinstance(args.token_list, str):
            args.token_list = Path(args.token_list).read_text(encoding="utf-8").split("\n")[:-1]
        frontend_conf = dict(args.frontend_conf or {})
        if args.frontend == "default":
            frontend_conf.setdefault("center", False)
            if frontend_conf["center"]:
                raise ValueError("frontend_conf center must be false: a centred STFT frame changes when more "
                                 "audio arrives, which a streaming model cannot allow")
        frontend = frontend_choices.get_class(args.frontend)(**frontend_conf)
        encoder = ChunkedEncoder(frontend.output_size(), **(args.streaming_encoder_conf or {}))
        teacher = None
        if getattr(args, "teacher_model", None):
            teacher, _ = cls.build_model_from_file(args.teacher_config, args.teacher_model, device="cpu")
        return StreamingKDModel(len(args.token_list), frontend, encoder, teacher=teacher, **(args.model_conf or {}))


def live_subsampling_channels(model: StreamingKDModel, audios: list) -> tuple[int, int]:
    """Channels of the subsampling's last convolution that are positive anywhere on `audios`, and how many it
    has. None alive: the encoder passes no audio on (dead ReLUs; a run whose first steps had a large gradient
    can end there) and the model says the same for every input."""
    conv = model.encoder.embed.conv
    alive = torch.zeros(conv[2].out_channels, dtype=torch.bool)
    with torch.no_grad():
        for audio in audios:
            speech = torch.from_numpy(audio)[None]
            feats, _ = model.frontend(speech, torch.tensor([speech.shape[1]]))
            alive |= (conv(model.encoder.input_norm(feats).unsqueeze(1)) > 0).any(dim=(0, 2, 3))
    return int(alive.sum()), alive.numel()


def validation_audio(conf: dict, count: int) -> list:
    """The first `count` utterances of a training config's validation audio (its wav.scp), if it names one."""
    import soundfile as sf

    for path, _, kind in conf.get("valid_data_path_and_name_and_type") or []:
        if kind == "sound" and Path(path).is_file():
            return [sf.read(wav, dtype="float32")[0] for wav in list(read_text_file(Path(path)).values())[:count]]
    return []


def export(config: Path, checkpoint: Path, out_dir: Path) -> Path:
    """The streaming model alone: the training config without the teacher, the checkpoint without the
    teacher, heads and branches. Returns the model file (OUT_DIR/model.pth, OUT_DIR/config.yaml beside it).
    A model whose subsampling passes no audio on (live_subsampling_channels on the config's validation audio)
    is refused and nothing is written."""
    conf = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    probe = validation_audio(conf, PROBE_UTTERANCES)
    conf["model_conf"] = {"kd": "none", **{k: v for k, v in (conf.get("model_conf") or {}).items()
                                           if k in HEAD_OPTIONS}}
    conf["teacher_config"] = conf["teacher_model"] = None
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(TRAINING_ONLY)}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(conf, allow_unicode=True), encoding="utf-8")
    torch.save(state, out_dir / "model.pth")
    if probe:
        model, _ = StreamingKDTask.build_model_from_file(out_dir / "config.yaml", out_dir / "model.pth", "cpu")
        alive, channels = live_subsampling_channels(model.eval(), probe)
        if not alive:
            for name in ("config.yaml", "model.pth"):
                (out_dir / name).unlink()
            raise ValueError(f"{checkpoint}: none of the {channels} channels of the subsampling's last convolution "
                             f"is positive on {len(probe)} validation utterances: the encoder passes no audio on "
                             "and the model says the same for every input (its ReLUs died in training). Train it "
                             "again with another seed (systems.txt: NAME=...,seed=N)")
        log.info("%s: %d of %d subsampling channels live on %d validation utterances", checkpoint, alive, channels,
                 len(probe))
    return out_dir / "model.pth"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        parser = argparse.ArgumentParser(prog="python -m k2d.streaming.task export",
                                         description=export.__doc__)
        parser.add_argument("--config", type=Path, required=True)
        parser.add_argument("--checkpoint", type=Path, required=True)
        parser.add_argument("--out-dir", type=Path, required=True)
        args = parser.parse_args(argv[1:])
        try:
            print(export(args.config, args.checkpoint, args.out_dir))
        except ValueError as error:
            parser.exit(1, f"error: {error}\n")
        return
    StreamingKDTask.main(cmd=argv)


if __name__ == "__main__":
    main()
