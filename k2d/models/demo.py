"""The demo's own Whisper-architecture models (mini_cs cannot download Whisper).

They are ordinary transformers Whisper models with a tokenizer built from the corpus text and a shorter
input window, so everything downstream treats them exactly like real Whisper checkpoints.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from transformers import (
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)

from k2d.config import option
from k2d.models.tokenizer import build_whisper_tokenizer, train_byte_bpe
from k2d.models.whisper import complete_generation_config


@dataclass
class DemoModelSpec:
    """Shape of a small Whisper model."""

    d_model: int = option(256, "hidden size", minimum=1)
    encoder_layers: int = option(6, "encoder layers", minimum=1)
    decoder_layers: int = option(6, "decoder layers", minimum=1)
    attention_heads: int = option(4, "attention heads (encoder and decoder)", minimum=1)
    ffn_dim: int = option(1024, "feed-forward size", minimum=1)
    window_seconds: int = option(10, "input window in seconds (Whisper: 30)", minimum=1)
    num_mel_bins: int = option(80, "log-mel bins", minimum=1)
    dropout: float = option(0.1, "dropout", minimum=0, maximum=1)


def build_corpus_tokenizer(sentence_source, num_sentences: int, vocab_size: int, seed: int = 0):
    """Train the demo's byte-level BPE on `num_sentences` drawn from `sentence_source(rng)`."""
    rng = random.Random(seed)
    texts = [sentence_source(rng).text for _ in range(num_sentences)]
    vocab, merges = train_byte_bpe(texts, vocab_size)
    return build_whisper_tokenizer(vocab, merges)


def build_demo_whisper(spec: DemoModelSpec, tokenizer) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """A randomly initialised Whisper model of shape `spec` with its processor and generation config."""
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=spec.num_mel_bins,
        d_model=spec.d_model,
        encoder_layers=spec.encoder_layers,
        decoder_layers=spec.decoder_layers,
        encoder_attention_heads=spec.attention_heads,
        decoder_attention_heads=spec.attention_heads,
        encoder_ffn_dim=spec.ffn_dim,
        decoder_ffn_dim=spec.ffn_dim,
        max_source_positions=spec.window_seconds * 50,
        max_target_positions=448,
        dropout=spec.dropout,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration(config)
    complete_generation_config(model.generation_config, tokenizer, config)
    extractor = WhisperFeatureExtractor(feature_size=spec.num_mel_bins, chunk_length=spec.window_seconds)
    return model, WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer)
