"""Export a Whisper model directory (teacher, validator, K²D student) to ONNX in the layout sherpa-onnx's offline
Whisper recognizer loads: encoder.onnx (log-mel -> every decoder layer's cross-attention keys and values),
decoder.onnx (one step with the self-attention cache as input and output), tokens.txt, and with --int8 the
dynamically quantised encoder.int8.onnx / decoder.int8.onnx.

    python -m k2d.export_onnx --model exp/mini_cs/export --out exp/mini_cs/export_onnx --int8

Decode with sherpa-onnx (the k2-fsa runtime for phones, Raspberry Pis and servers):

    import sherpa_onnx
    recognizer = sherpa_onnx.OfflineRecognizer.from_whisper(
        encoder="export_onnx/encoder.onnx", decoder="export_onnx/decoder.onnx",
        tokens="export_onnx/tokens.txt", language="zh")

The encoder takes any number of frames, as sherpa-onnx gives them (the utterance's frames, then zeros), and
makes the window the model was trained on: frames past the window are dropped, and the zero frames sherpa-onnx
appends are replaced, like the rest of the window, by the log-mel of silence that k2d and transformers pad
with. Models with a window shorter than 30 s (mini_cs's 10 s) therefore decode as they do in k2d.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

import torch
from torch import nn

from k2d.models.tokenizer import WHISPER_LANGUAGES, SpecialTokens
from k2d.models.whisper import load_whisper
from k2d.onnx_files import add_metadata, quantize_int8, replaced_directory, run_export, trace_to_onnx
from k2d.utils import setup_logging

ENCODER, DECODER, TOKENS = "encoder.onnx", "decoder.onnx", "tokens.txt"
# the lowest normalised log-mel value: Whisper's features are clamped at 8 (log10) below their maximum and
# floored at log10(1e-10) = -10, then mapped by (x + 4) / 4
SILENCE_FLOOR = (-10.0 + 4.0) / 4.0


class WindowedEncoder(nn.Module):
    """mel (N, n_mels, T) normalised as Whisper normalises it -> cross keys and values (layers, N, positions, d)."""

    def __init__(self, model):
        super().__init__()
        self.encoder, self.layers = model.model.encoder, model.model.decoder.layers
        self.frames = 2 * model.config.max_source_positions

    def forward(self, mel: torch.Tensor):
        mel = mel[:, :, : self.frames]
        # sherpa-onnx appends zero frames after normalising; k2d pads the audio, whose log-mel is the floor
        padding = (mel == 0).all(dim=1, keepdim=True)
        top = mel.masked_fill(padding, float("-inf")).amax(dim=(1, 2), keepdim=True)
        silence = torch.clamp(top - 2.0, min=SILENCE_FLOOR)  # 8 below the maximum, in normalised units
        mel = torch.where(padding, silence, mel)
        mel = torch.cat([mel, silence.expand(-1, mel.shape[1], self.frames)], dim=2)[:, :, : self.frames]
        states = self.encoder(input_features=mel).last_hidden_state
        keys = torch.stack([layer.encoder_attn.k_proj(states) for layer in self.layers])
        values = torch.stack([layer.encoder_attn.v_proj(states) for layer in self.layers])
        return keys, values


def attention(query, keys, values, heads: int, mask=None):
    """Scaled dot-product attention of (N, Tq, d) on (N, Tk, d) with `heads` heads."""
    n, tq, d = query.shape
    split = lambda x: x.reshape(n, x.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
    scores = split(query) @ split(keys).transpose(-1, -2) * (d // heads) ** -0.5
    if mask is not None:
        scores = scores + mask
    return (scores.softmax(-1) @ split(values)).transpose(1, 2).reshape(n, tq, d)


class CachedDecoder(nn.Module):
    """One decoding step: tokens (N, n) at positions offset.. offset+n-1, the self-attention cache of every
    layer (layers, N, n_text_ctx, d) in and out, the encoder's cross keys and values -> logits (N, n, vocab)."""

    def __init__(self, model):
        super().__init__()
        self.decoder, self.output = model.model.decoder, model.proj_out
        self.heads = model.config.decoder_attention_heads

    def forward(self, tokens, self_keys, self_values, cross_keys, cross_values, offset):
        start, n = offset[0], tokens.shape[1]
        end = start + n
        x = self.decoder.embed_tokens(tokens) + self.decoder.embed_positions.weight[start:end]
        key_positions = torch.arange(end, device=tokens.device)
        query_positions = start + torch.arange(n, device=tokens.device)
        future = key_positions[None, :] > query_positions[:, None]
        mask = torch.zeros_like(future, dtype=x.dtype).masked_fill(future, float("-inf"))
        new_keys, new_values = [], []
        for i, layer in enumerate(self.decoder.layers):
            h = layer.self_attn_layer_norm(x)
            keys = torch.cat([self_keys[i, :, :start], layer.self_attn.k_proj(h), self_keys[i, :, end:]], dim=1)
            values = torch.cat([self_values[i, :, :start], layer.self_attn.v_proj(h), self_values[i, :, end:]], dim=1)
            new_keys.append(keys)
            new_values.append(values)
            x = x + layer.self_attn.out_proj(
                attention(layer.self_attn.q_proj(h), keys[:, :end], values[:, :end], self.heads, mask))
            h = layer.encoder_attn_layer_norm(x)
            x = x + layer.encoder_attn.out_proj(
                attention(layer.encoder_attn.q_proj(h), cross_keys[i], cross_values[i], self.heads))
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        # the tied output projection as weight @ x^T: the embedding's one initializer serves both ends, where
        # x @ weight^T would store a transposed copy (another 106 MB for Whisper's 51,865 x 512)
        logits = torch.matmul(self.output.weight, self.decoder.layer_norm(x).transpose(1, 2)).transpose(1, 2)
        return logits, torch.stack(new_keys), torch.stack(new_values)


def metadata(model, tokenizer) -> dict[str, str]:
    """What sherpa-onnx reads from the encoder (model dimensions and special-token ids; its names)."""
    config, specials = model.config, SpecialTokens.of(tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    codes = [code for code in WHISPER_LANGUAGES if code in specials.languages]
    values = {
        "model_type": "whisper-k2d", "version": "1", "maintainer": "k2d",
        "n_mels": config.num_mel_bins, "n_audio_ctx": config.max_source_positions, "n_audio_state": config.d_model,
        "n_audio_head": config.encoder_attention_heads, "n_audio_layer": config.encoder_layers,
        "n_vocab": config.vocab_size, "n_text_ctx": config.max_target_positions, "n_text_state": config.d_model,
        "n_text_head": config.decoder_attention_heads, "n_text_layer": config.decoder_layers,
        # sherpa-onnx overwrites the language (index 1) and the task (index 2) of this sequence
        "sot_sequence": ",".join(map(str, specials.prefix("en", "transcribe", timestamps=True))),
        "all_language_tokens": ",".join(str(specials.languages[code]) for code in codes),
        "all_language_codes": ",".join(codes),
        "sot": specials.sot, "sot_index": 0, "eot": specials.eot,
        "blank_id": tokenizer.encode(" ", add_special_tokens=False)[0],
        "is_multilingual": int(len(codes) > 1),
        "no_speech": specials.no_speech if specials.no_speech is not None else specials.eot,
        "non_speech_tokens": ",".join(map(str, model.generation_config.suppress_tokens or [])),
        "transcribe": specials.transcribe, "translate": specials.translate, "sot_prev": specials.sot_prev,
        "sot_lm": ids("<|startoflm|>"), "no_timestamps": specials.no_timestamps,
    }
    return {key: str(value) for key, value in values.items()}


def byte_of_char() -> dict[str, int]:
    """Byte-level BPE's alphabet (GPT-2's, Whisper's): printable bytes stand for themselves, the other bytes
    for the characters from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + i): b for i, b in enumerate(others)}}


def token_lines(tokenizer) -> list[str]:
    """tokens.txt: each text token's bytes in base64 and its id (special and timestamp tokens are left out,
    so sherpa-onnx leaves them out of the text)."""
    to_byte = byte_of_char()
    eot = SpecialTokens.of(tokenizer).eot
    vocab = sorted((i, token) for token, i in tokenizer.get_vocab().items() if i < eot)
    return [f"{base64.b64encode(bytes(to_byte[c] for c in token)).decode()} {i}" for i, token in vocab]


def example_inputs(model, batch: int = 1, frames: int = 200):
    """Inputs of the right shapes for tracing (the sequence and frame axes are dynamic in the export)."""
    config = model.config
    mel = torch.zeros(batch, config.num_mel_bins, frames)
    cache = torch.zeros(config.decoder_layers, batch, config.max_target_positions, config.d_model)
    return mel, cache


@torch.no_grad()
def export_sherpa_onnx(model_dir: Path, out_dir: Path, int8: bool = False, mix_lang_emb: bool = False) -> Path:
    """Write `out_dir` (replaced as a whole, so an existing output is always complete)."""
    model, processor = load_whisper(model_dir, mix_lang_emb=mix_lang_emb)
    model.float().eval()
    with replaced_directory(out_dir) as tmp:
        write_sherpa_onnx(model, processor, tmp, int8)
    return Path(out_dir)


def write_sherpa_onnx(model, processor, tmp: Path, int8: bool) -> None:
    mel, cache = example_inputs(model)
    encoder = WindowedEncoder(model).eval()
    cross_keys, cross_values = encoder(mel)
    trace_to_onnx(
        encoder, (mel,), tmp / ENCODER,
        input_names=["mel"], output_names=["n_layer_cross_k", "n_layer_cross_v"],
        dynamic_axes={"mel": {0: "n_audio", 2: "n_frames"}, "n_layer_cross_k": {1: "n_audio"},
                      "n_layer_cross_v": {1: "n_audio"}},
    )
    add_metadata(tmp / ENCODER, metadata(model, processor.tokenizer))
    specials = SpecialTokens.of(processor.tokenizer)
    tokens = torch.tensor([specials.prefix("zh" if "zh" in specials.languages else "en", "transcribe", False)])
    offset = torch.tensor([0], dtype=torch.int64)
    trace_to_onnx(
        CachedDecoder(model).eval(), (tokens, cache, cache.clone(), cross_keys, cross_values, offset), tmp / DECODER,
        input_names=["tokens", "in_n_layer_self_k_cache", "in_n_layer_self_v_cache", "n_layer_cross_k",
                     "n_layer_cross_v", "offset"],
        output_names=["logits", "out_n_layer_self_k_cache", "out_n_layer_self_v_cache"],
        dynamic_axes={"tokens": {0: "n_audio", 1: "n_tokens"}, "in_n_layer_self_k_cache": {1: "n_audio"},
                      "in_n_layer_self_v_cache": {1: "n_audio"}, "n_layer_cross_k": {1: "n_audio"},
                      "n_layer_cross_v": {1: "n_audio"}},
    )
    (tmp / TOKENS).write_text("\n".join(token_lines(processor.tokenizer)) + "\n", encoding="utf-8")
    if int8:
        quantize_int8(tmp, (ENCODER, DECODER))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k2d.export_onnx", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model directory (save_pretrained), installed name or Hub id")
    parser.add_argument("--out", required=True, type=Path, help="output directory (replaced)")
    parser.add_argument("--int8", action="store_true", help="also write int8 weights (encoder.int8.onnx, ...)")
    parser.add_argument("--mix-lang-emb", action="store_true", help="apply the code-switching <|zh|> embedding first")
    args = parser.parse_args(argv)
    setup_logging()
    return run_export(lambda: export_sherpa_onnx(args.model, args.out, args.int8, args.mix_lang_emb),
                      "sherpa-onnx Whisper model")


if __name__ == "__main__":
    sys.exit(main())
