"""Real Whisper shapes with random weights: decoding time at a forced output length."""

from __future__ import annotations

import logging
import statistics

import torch

from k2d.models.whisper import count_parameters, resolve_device
from k2d.speed import (
    hardware,
    timed,
)

log = logging.getLogger("k2d.bench")


SHAPES = {
    # (d_model, encoder layers, decoder layers, heads, ffn, vocab, mel bins)
    "large-v2": (1280, 32, 32, 20, 5120, 51865, 80),
    "medium": (1024, 24, 24, 16, 4096, 51865, 80),
    "base": (512, 6, 6, 8, 2048, 51865, 80),
    "tiny-test": (64, 2, 4, 2, 128, 51865, 80),  # for the test suite (full vocabulary: real special-token ids)
}


def random_whisper(shape: str, decoder_layers: int | None = None):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    d, enc, dec, heads, ffn, vocab, mels = SHAPES[shape]
    config = WhisperConfig(
        vocab_size=vocab, num_mel_bins=mels, d_model=d, encoder_layers=enc, decoder_layers=decoder_layers or dec,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        max_source_positions=1500, max_target_positions=448,
    )
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model = model.to_empty(device="cpu").apply(_init_small)
    model.tie_weights()  # to_empty unties the output projection from the token embedding; Whisper shares them
    return model


def _init_small(module):
    if isinstance(module, (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d)):
        torch.nn.init.normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            torch.nn.init.zeros_(module.bias)
    elif isinstance(module, torch.nn.LayerNorm):
        torch.nn.init.ones_(module.weight)
        torch.nn.init.zeros_(module.bias)


@torch.no_grad()
def forced_decode_time(model, tokens: int, batch: int, runs: int, device: torch.device) -> dict:
    """Encoder on 30 s of features plus exactly `tokens` greedy decoder steps with a KV cache."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    features = torch.randn(batch, model.config.num_mel_bins, 3000, device=device, dtype=model.dtype)

    def run():
        encoder_out = model.model.encoder(features).last_hidden_state
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        token = torch.full((batch, 1), 50258, device=device)
        for _ in range(tokens):
            out = model(encoder_outputs=(encoder_out,), decoder_input_ids=token, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            token = out.logits[:, -1:].argmax(-1)

    times = timed(run, runs)
    return {"seconds": statistics.mean(times), "std": statistics.pstdev(times)}


def bench_shapes(shape: str, tokens: int, batch: int, runs: int, device: str, dtype: str) -> str:
    dev = resolve_device(device)
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    rows = []
    for name, decoder_layers in ((f"{shape} (random weights)", None), (f"{shape} student, 2 decoder layers", 2)):
        model = random_whisper(shape, decoder_layers).to(dev, torch_dtype).eval()
        result = forced_decode_time(model, tokens, batch, runs, dev)
        rows.append((name, count_parameters(model), result))
        log.info("%s: %.3f s per batch of %d 30 s windows, %d tokens each", name, result["seconds"], batch, tokens)
        del model
    base = rows[0][2]["seconds"]
    lines = [f"{hardware()}, {dtype}, batch {batch}, 30 s of input, {tokens} forced output tokens, "
             f"{runs} runs after a warm-up",
             "", "| model | parameters | seconds per batch | speed-up |", "|---|---|---|---|"]
    for name, params, result in rows:
        lines.append(f"| {name} | {params / 1e6:.0f}M | {result['seconds']:.3f} ± {result['std']:.3f} | "
                     f"{base / result['seconds']:.2f}x |")
    return "\n".join(lines)


