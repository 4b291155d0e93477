"""Export a streaming student (k2d.streaming.task export) to sherpa-onnx's online CTC format for WeNet-style
chunked models, so that it runs on devices through sherpa-onnx's streaming recognizer:

    python -m k2d.streaming.onnx --model exp/x/export --out exp/x/export_sherpa [--int8] [--left-chunks 4]

    import sherpa_onnx
    recognizer = sherpa_onnx.OnlineRecognizer.from_wenet_ctc(
        model="export_sherpa/model.onnx", tokens="export_sherpa/tokens.txt", chunk_size=8, num_left_chunks=4)

`chunk_size` and `num_left_chunks` must be the ones written in export_sherpa/README.txt (and the model's
metadata). One call of model.onnx is one chunk: (chunk - 1) x 4 + 7 Kaldi fbank frames in, the chunk's CTC
log-probabilities out, each layer's attention keys and values of the last `left_chunks` chunks carried as
`attn_cache` (the model has no convolution module: `conv_cache` is empty and passed through). Positions are
counted from the stream's start (`offset`, which sherpa-onnx starts at the cache size). The result is the text
of `python -m k2d.streaming.stream --ctc` (the CTC head; a transducer's prediction network is not part of this
format).

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
from torch import nn

from k2d.onnx_files import add_metadata, quantize_int8, replaced_directory, run_export, trace_to_onnx
from k2d.streaming.frontend import KaldiFbank
from k2d.streaming.stream import SUBSAMPLING, SUBSAMPLING_CONTEXT, load_model
from k2d.utils import setup_logging

log = logging.getLogger("k2d.streaming.onnx")
MODEL, TOKENS = "model.onnx", "tokens.txt"


def chunk_input_frames(chunk: int) -> int:
    """Feature frames behind one chunk of encoder frames (sherpa-onnx's ChunkLength)."""
    return (chunk - 1) * SUBSAMPLING + SUBSAMPLING_CONTEXT


class WenetCtcChunk(nn.Module):
    """One chunk of a ChunkedEncoder + CTC with sherpa-onnx's WeNet CTC inputs and outputs."""

    def __init__(self, model, chunk: int, left_chunks: int):
        super().__init__()
        self.encoder, self.ctc = model.encoder, model.ctc
        self.chunk, self.cache_frames = chunk, chunk * left_chunks
        size = self.encoder.output_size()
        self.register_buffer("div_term", torch.exp(torch.arange(0, size, 2, dtype=torch.float32)
                                                   * -(math.log(10000.0) / size)))

    def positional_encoding(self, first: torch.Tensor) -> torch.Tensor:
        """ESPnet's sinusoidal encoding of positions first .. first + chunk - 1, computed rather than looked up
        so that a stream has no length limit."""
        angles = (first + torch.arange(self.chunk)).float()[:, None] * self.div_term
        return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(1, self.chunk, -1)

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
        embed = self.encoder.embed
        h = embed.conv(self.encoder.input_norm(x).unsqueeze(1))
        batch, channels, time, bins = h.shape
        h = embed.out[0](h.transpose(1, 2).reshape(batch, time, channels * bins))
        h = h * embed.out[1].xscale + self.positional_encoding(offset - required_cache_size)
        caches = []
        for layer, cached in zip(self.encoder.layers, attn_cache, strict=True):
            attended, new_cache = self.attend(layer.self_attn, layer.norm1(h), cached, attn_mask)
            h = h + attended
            h = h + layer.feed_forward(layer.norm2(h))
            caches.append(new_cache)
        log_probs = self.ctc.log_softmax(self.encoder.after_norm(h))
        return log_probs, torch.stack(caches), conv_cache * 1.0


def token_lines(token_list: list[str]) -> list[str]:
    """tokens.txt as sherpa-onnx reads it: `TOKEN ID` per line."""
    return [f"{token} {i}" for i, token in enumerate(token_list)]


def read_tokens(path: Path) -> dict[str, int]:
    """tokens.txt back: token -> id."""
    pairs = (line.rsplit(" ", 1) for line in Path(path).read_text(encoding="utf-8").splitlines())
    return {token: int(i) for token, i in pairs}


@torch.no_grad()
def export_wenet_ctc(model_dir: Path, out_dir: Path, left_chunks: int | None = None, int8: bool = False) -> Path:
    """Write out_dir (replaced as a whole): model.onnx (+ model.int8.onnx), tokens.txt, README.txt."""
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k2d.streaming.onnx", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path,
                        help="an exported streaming model (config.yaml, model.pth)")
    parser.add_argument("--out", required=True, type=Path, help="output directory (replaced)")
    parser.add_argument("--left-chunks", type=int, help="earlier chunks each chunk sees (default: the model's)")
    parser.add_argument("--int8", action="store_true", help="also write model.int8.onnx (int8 weights)")
    args = parser.parse_args(argv)
    setup_logging()
    for name in ("config.yaml", "model.pth"):
        if not (args.model / name).is_file():
            parser.error(f"--model {args.model} has no {name}: export a trained model with "
                         "python -m k2d.streaming.task export")
    return run_export(lambda: export_wenet_ctc(args.model, args.out, args.left_chunks, args.int8),
                      "sherpa-onnx online CTC model")


if __name__ == "__main__":
    sys.exit(main())
