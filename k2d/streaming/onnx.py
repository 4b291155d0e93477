"""Export a streaming student (k2d.streaming.task export) to sherpa-onnx's online formats, so that it runs on
devices through sherpa-onnx's streaming recognizer:

    python -m k2d.streaming.onnx --model exp/x/export --out exp/x/export_sherpa [--int8] [--left-chunks 4]
    python -m k2d.streaming.onnx --model exp/x/export --out exp/x/export_sherpa_rnnt --head transducer [--int8]

    import sherpa_onnx
    recognizer = sherpa_onnx.OnlineRecognizer.from_wenet_ctc(
        model="export_sherpa/model.onnx", tokens="export_sherpa/tokens.txt", chunk_size=8, num_left_chunks=4)
    recognizer = sherpa_onnx.OnlineRecognizer.from_transducer(
        encoder="export_sherpa_rnnt/encoder.onnx", decoder="export_sherpa_rnnt/decoder.onnx",
        joiner="export_sherpa_rnnt/joiner.onnx", tokens="export_sherpa_rnnt/tokens.txt",
        model_type="conformer", normalize_samples=False)

`--head ctc` (the default): the CTC head in the online CTC format of WeNet-style chunked models. `chunk_size`
and `num_left_chunks` must be the ones written in README.txt (and the model's metadata). One call of model.onnx
is one chunk: (chunk - 1) x 4 + 7 Kaldi fbank frames in, the chunk's CTC log-probabilities out, each layer's
attention keys and values of the last `left_chunks` chunks carried as `attn_cache` (the model has no
convolution module: `conv_cache` is empty and passed through). Positions are counted from the stream's start
(`offset`, which sherpa-onnx starts at the cache size). The text is that of `python -m k2d.streaming.stream --ctc`.

`--head transducer`: a transducer student with a stateless prediction network (`prediction: stateless`) in the
online transducer format of icefall's streaming conformer (sherpa-onnx's `conformer` model type): encoder.onnx
takes the same chunk of frames, each layer's normalised inputs of the last `left_chunks` chunks (`attn_cache`,
layers x frames x batch x dims), an unused `conv_cache` and `processed_frames` (feature frames before the
chunk), and gives the joint network's encoder projection; decoder.onnx maps the last `context_size` tokens to
its prediction projection; joiner.onnx adds the two and gives the logits. sherpa-onnx's greedy search emits at
most one token per frame: its text is that of `python -m k2d.streaming.stream --max-symbols 1`.

Needs a student trained with `frontend: kaldi_fbank` (sherpa-onnx computes those features itself) and a finite
`left_chunks` (sherpa-onnx keeps a cache of fixed size): `--left-chunks` sets it for a model trained with
every earlier chunk, which then decodes with less context than it was trained with.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import torch
import yaml
from torch import nn

from k2d.espnet.rnnt import BLANK
from k2d.onnx_files import add_metadata, quantize_int8, replaced_directory, run_export, trace_to_onnx
from k2d.streaming.frontend import KaldiFbank
from k2d.streaming.stream import SUBSAMPLING, SUBSAMPLING_CONTEXT, load_model
from k2d.utils import setup_logging

log = logging.getLogger("k2d.streaming.onnx")
MODEL, TOKENS = "model.onnx", "tokens.txt"
ENCODER, DECODER, JOINER = "encoder.onnx", "decoder.onnx", "joiner.onnx"  # --head transducer


def chunk_input_frames(chunk: int) -> int:
    """Feature frames behind one chunk of encoder frames (sherpa-onnx's ChunkLength)."""
    return (chunk - 1) * SUBSAMPLING + SUBSAMPLING_CONTEXT


class EncoderChunk(nn.Module):
    """What both formats do first with one chunk of feature frames: input norm, ESPnet's conv2d subsampling and
    the positional encoding of the chunk's place in the stream."""

    def __init__(self, model, chunk: int, left_chunks: int):
        super().__init__()
        self.encoder = model.encoder
        self.chunk, self.cache_frames = chunk, chunk * left_chunks
        size = self.encoder.output_size()
        self.register_buffer("div_term", torch.exp(torch.arange(0, size, 2, dtype=torch.float32)
                                                   * -(math.log(10000.0) / size)))

    def positional_encoding(self, first: torch.Tensor) -> torch.Tensor:
        """ESPnet's sinusoidal encoding of positions first .. first + chunk - 1 (first: (N,) one per stream),
        computed rather than looked up so that a stream has no length limit."""
        angles = (first.reshape(-1, 1) + torch.arange(self.chunk)).float()[..., None] * self.div_term
        return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)

    def subsample(self, x: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        embed = self.encoder.embed
        h = embed.conv(self.encoder.input_norm(x).unsqueeze(1))
        batch, channels, time, bins = h.shape
        h = embed.out[0](h.transpose(1, 2).reshape(batch, time, channels * bins))
        return h * embed.out[1].xscale + self.positional_encoding(first)


class WenetCtcChunk(EncoderChunk):
    """One chunk of a ChunkedEncoder + CTC with sherpa-onnx's WeNet CTC inputs and outputs."""

    def __init__(self, model, chunk: int, left_chunks: int):
        super().__init__(model, chunk, left_chunks)
        self.ctc = model.ctc

    def attend(self, attention, x, cached, mask):
        """ESPnet's MultiHeadedAttention of the chunk on the cached keys/values and its own."""
        batch, heads, d_k = x.shape[0], attention.h, attention.d_k
        split = lambda t: t.view(batch, -1, heads, d_k).transpose(1, 2)  # noqa: E731
        q = attention.q_norm(split(attention.linear_q(x)))
        k = attention.k_norm(split(attention.linear_k(x)))
        v = split(attention.linear_v(x))
        keys = torch.cat([cached[None, :, :, :d_k], k], dim=2)
        values = torch.cat([cached[None, :, :, d_k:], v], dim=2)
        scores = q @ keys.transpose(-2, -1) / math.sqrt(d_k)
        new_cache = torch.cat([keys, values], dim=-1)[0, :, -self.cache_frames :]
        return attention.forward_attention(values, scores, mask), new_cache

    def forward(self, x, offset, required_cache_size, attn_cache, conv_cache, attn_mask):
        h = self.subsample(x, offset - required_cache_size)
        caches = []
        for layer, cached in zip(self.encoder.layers, attn_cache, strict=True):
            attended, new_cache = self.attend(layer.self_attn, layer.norm1(h), cached, attn_mask)
            h = h + attended
            h = h + layer.feed_forward(layer.norm2(h))
            caches.append(new_cache)
        log_probs = self.ctc.log_softmax(self.encoder.after_norm(h))
        return log_probs, torch.stack(caches), conv_cache * 1.0


class ConformerTransducerEncoder(EncoderChunk):
    """One chunk of a ChunkedEncoder in the inputs and outputs of sherpa-onnx's online conformer transducer
    encoder, the joint network's encoder projection applied."""

    def __init__(self, model, chunk: int, left_chunks: int):
        super().__init__(model, chunk, left_chunks)
        self.project = model.transducer.joint_network.lin_enc

    def forward(self, x, attn_cache, conv_cache, processed_frames):
        done = torch.div(processed_frames, SUBSAMPLING, rounding_mode="floor")  # encoder frames before the chunk
        h = self.subsample(x, done)
        # a cache slot holds a frame once `done` reaches it (slots fill from the right); the chunk sees itself
        cached = torch.arange(self.cache_frames) >= (self.cache_frames - done).reshape(-1, 1)
        mask = torch.cat([cached, torch.ones_like(cached[:, :1]).expand(-1, self.chunk)], dim=1)[:, None, :]
        caches = []
        for layer, cache in zip(self.encoder.layers, attn_cache, strict=True):
            normed = layer.norm1(h)
            keys = torch.cat([cache.transpose(0, 1), normed], dim=1)
            h = h + layer.self_attn(normed, keys, keys, mask)
            h = h + layer.feed_forward(layer.norm2(h))
            caches.append(keys[:, -self.cache_frames :].transpose(0, 1))
        return self.project(self.encoder.after_norm(h)), torch.stack(caches), conv_cache * 1.0


class StatelessDecoder(nn.Module):
    """The last context_size tokens (N, C) -> the joint network's prediction projection (N, J). sherpa-onnx starts
    a stream with the context [-1, ..., -1, blank] (icefall's decoders read -1 as padding): -1 is read as the blank,
    whose embedding is zero, as k2d starts with context_size blanks (ONNX's Gather would take the last row)."""

    def __init__(self, transducer):
        super().__init__()
        self.prediction, self.project = transducer.decoder, transducer.joint_network.lin_dec

    def forward(self, y):
        return self.project(self.prediction(y.clamp(min=BLANK))[:, -1])


class Joiner(nn.Module):
    """Both projections (N, J) -> the logits (N, V): the rest of ESPnet's joint network."""

    def __init__(self, transducer):
        super().__init__()
        joint = transducer.joint_network
        self.activation, self.out = joint.joint_activation, joint.lin_out

    def forward(self, encoder_out, decoder_out):
        return self.out(self.activation(encoder_out + decoder_out))


def token_lines(token_list: list[str]) -> list[str]:
    """tokens.txt as sherpa-onnx reads it: `TOKEN ID` per line."""
    return [f"{token} {i}" for i, token in enumerate(token_list)]


def read_tokens(path: Path) -> dict[str, int]:
    """tokens.txt back: token -> id."""
    pairs = (line.rsplit(" ", 1) for line in Path(path).read_text(encoding="utf-8").splitlines())
    return {token: int(i) for token, i in pairs}


def exportable(model_dir: Path, left_chunks: int | None):
    """(model, training args, earlier chunks each chunk sees) of a model sherpa-onnx can stream, or ValueError."""
    model, args = load_model(Path(model_dir))
    encoder = model.encoder
    if not isinstance(model.frontend, KaldiFbank):
        raise ValueError(f"{model_dir}: trained on frontend {args.frontend}; sherpa-onnx computes Kaldi fbank "
                         "features itself, so the student must be trained with frontend: kaldi_fbank")
    if encoder.chunk_size < 1:
        raise ValueError(f"{model_dir}: chunk_size {encoder.chunk_size} is a full-context model, not a streaming one")
    left = encoder.left_chunks if left_chunks is None else left_chunks
    if left < 1:
        raise ValueError(f"{model_dir}: left_chunks {encoder.left_chunks}: sherpa-onnx keeps a cache of fixed "
                         "size; give --left-chunks N (earlier chunks each chunk sees)")
    if left_chunks is not None and left_chunks != encoder.left_chunks:
        log.warning("%s was trained with left_chunks %d; the export sees %d earlier chunks", model_dir,
                    encoder.left_chunks, left)
    return model, args, left


@torch.no_grad()
def export_wenet_ctc(model_dir: Path, out_dir: Path, left_chunks: int | None = None, int8: bool = False) -> Path:
    """Write out_dir (replaced as a whole): model.onnx (+ model.int8.onnx), tokens.txt, README.txt."""
    model, args, left = exportable(model_dir, left_chunks)
    encoder = model.encoder
    chunk, layer = encoder.chunk_size, encoder.layers[0].self_attn
    module = WenetCtcChunk(model, chunk, left).eval()
    cache = torch.zeros(len(encoder.layers), layer.h, chunk * left, 2 * layer.d_k)
    conv_cache = torch.zeros(len(encoder.layers), 1, encoder.output_size(), 0)
    mask = torch.ones(1, 1, chunk * (left + 1), dtype=torch.bool)
    inputs = (torch.zeros(1, chunk_input_frames(chunk), model.frontend.output_size()),
              torch.tensor([chunk * left]), torch.tensor([chunk * left]), cache, conv_cache, mask)
    vocab = len(args.token_list)
    with replaced_directory(out_dir) as tmp:
        trace_to_onnx(module, inputs, tmp / MODEL,
                      input_names=["x", "offset", "required_cache_size", "attn_cache", "conv_cache", "attn_mask"],
                      output_names=["log_probs", "next_att_cache", "next_conv_cache"])
        add_metadata(tmp / MODEL, {
            "model_type": "wenet_ctc", "version": "1", "model_author": "k2d", "comment": "streaming",
            "chunk_size": chunk, "left_chunks": left, "head": layer.h, "num_blocks": len(encoder.layers),
            "output_size": encoder.output_size(), "cnn_module_kernel": 1, "right_context": SUBSAMPLING_CONTEXT - 1,
            "subsampling_factor": SUBSAMPLING, "vocab_size": vocab})
        (tmp / TOKENS).write_text("\n".join(token_lines(args.token_list)) + "\n", encoding="utf-8")
        (tmp / "README.txt").write_text(
            f"sherpa-onnx online WeNet CTC model exported by k2d from {model_dir}\n"
            f"sherpa_onnx.OnlineRecognizer.from_wenet_ctc(model=..., tokens=..., chunk_size={chunk}, "
            f"num_left_chunks={left})\n", encoding="utf-8")
        if int8:
            quantize_int8(tmp, (MODEL,))
    return Path(out_dir)


@torch.no_grad()
def export_conformer_transducer(model_dir: Path, out_dir: Path, left_chunks: int | None = None,
                                int8: bool = False) -> Path:
    """Write out_dir (replaced as a whole): encoder.onnx, decoder.onnx, joiner.onnx (+ .int8.onnx),
    tokens.txt, README.txt."""
    model, args, left = exportable(model_dir, left_chunks)
    transducer, encoder = model.transducer, model.encoder
    if transducer is None or not transducer.stateless:
        kind = "a CTC model" if transducer is None else "a transducer with an LSTM prediction network"
        raise ValueError(f"{model_dir} is {kind}: sherpa-onnx's online transducers run a stateless prediction "
                         "network (train with model_conf head: transducer, prediction: stateless), or export "
                         "its CTC head (--head ctc)")
    chunk, layers, size = encoder.chunk_size, len(encoder.layers), encoder.output_size()
    context, joint = transducer.decoder.context_size, transducer.joint_network.lin_out.in_features
    batch = {0: "N"}  # streams decoded together
    encoder_inputs = (torch.zeros(1, chunk_input_frames(chunk), model.frontend.output_size()),
                      torch.zeros(layers, chunk * left, 1, size), torch.zeros(layers, 1, 1, size),
                      torch.zeros(1, dtype=torch.int64))
    with replaced_directory(out_dir) as tmp:
        trace_to_onnx(ConformerTransducerEncoder(model, chunk, left).eval(), encoder_inputs, tmp / ENCODER,
                      input_names=["x", "attn_cache", "conv_cache", "processed_frames"],
                      output_names=["encoder_out", "next_attn_cache", "next_conv_cache"],
                      dynamic_axes={"x": batch, "attn_cache": {2: "N"}, "conv_cache": {2: "N"},
                                    "processed_frames": batch, "encoder_out": batch, "next_attn_cache": {2: "N"},
                                    "next_conv_cache": {2: "N"}})
        add_metadata(tmp / ENCODER, {
            "model_type": "conformer", "version": "1", "model_author": "k2d", "comment": "streaming",
            "num_encoder_layers": layers, "T": chunk_input_frames(chunk), "decode_chunk_len": chunk * SUBSAMPLING,
            "left_context": chunk * left, "encoder_dim": size,
            "pad_length": chunk_input_frames(chunk) - chunk * SUBSAMPLING, "cnn_module_kernel": 2,
            "chunk_size": chunk, "left_chunks": left})
        trace_to_onnx(StatelessDecoder(transducer).eval(), (torch.zeros(1, context, dtype=torch.int64),),
                      tmp / DECODER, input_names=["y"], output_names=["decoder_out"],
                      dynamic_axes={"y": batch, "decoder_out": batch})
        add_metadata(tmp / DECODER, {"vocab_size": len(args.token_list), "context_size": context})
        trace_to_onnx(Joiner(transducer).eval(), (torch.zeros(1, joint), torch.zeros(1, joint)), tmp / JOINER,
                      input_names=["encoder_out", "decoder_out"], output_names=["logit"],
                      dynamic_axes={"encoder_out": batch, "decoder_out": batch, "logit": batch})
        (tmp / TOKENS).write_text("\n".join(token_lines(args.token_list)) + "\n", encoding="utf-8")
        (tmp / "README.txt").write_text(
            f"sherpa-onnx online transducer (conformer layout) exported by k2d from {model_dir}\n"
            "sherpa_onnx.OnlineRecognizer.from_transducer(encoder=..., decoder=..., joiner=..., tokens=..., "
            "model_type='conformer', normalize_samples=False)\n", encoding="utf-8")
        if int8:
            quantize_int8(tmp, (ENCODER, DECODER, JOINER))
    return Path(out_dir)


EXPORTS = {"ctc": export_wenet_ctc, "transducer": export_conformer_transducer}


def exportable_heads(model_conf: dict) -> list[str]:
    """The heads of a model (its config's model_conf) that sherpa-onnx can run: CTC always (a transducer
    student has a CTC head too), the transducer with a stateless prediction network."""
    stateless = model_conf.get("head") == "transducer" and model_conf.get("prediction") == "stateless"
    return ["ctc", "transducer"] if stateless else ["ctc"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k2d.streaming.onnx", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path,
                        help="an exported streaming model (config.yaml, model.pth)")
    parser.add_argument("--out", type=Path, help="output directory (replaced)")
    parser.add_argument("--list-heads", action="store_true",
                        help="print the heads of --model that can be exported, and export nothing")
    parser.add_argument("--left-chunks", type=int, help="earlier chunks each chunk sees (default: the model's)")
    parser.add_argument("--head", choices=list(EXPORTS), default="ctc",
                        help="ctc: the CTC head (online WeNet CTC); transducer: the transducer (online conformer "
                             "transducer; needs prediction: stateless)")
    parser.add_argument("--int8", action="store_true", help="also write *.int8.onnx (int8 weights)")
    args = parser.parse_args(argv)
    setup_logging()
    for name in ("config.yaml", "model.pth"):
        if not (args.model / name).is_file():
            parser.error(f"--model {args.model} has no {name}: export a trained model with "
                         "python -m k2d.streaming.task export")
    if args.list_heads:
        config = yaml.safe_load((args.model / "config.yaml").read_text(encoding="utf-8"))
        print(" ".join(exportable_heads(config.get("model_conf") or {})))
        return 0
    if args.out is None:
        parser.error("--out is required")
    return run_export(lambda: EXPORTS[args.head](args.model, args.out, args.left_chunks, args.int8),
                      f"sherpa-onnx online {args.head} model")


if __name__ == "__main__":
    sys.exit(main())
