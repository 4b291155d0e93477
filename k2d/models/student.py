"""Student creation (K²D / Distil-Whisper): the teacher's encoder, copied (and frozen by default), and a
decoder made of chosen teacher decoder layers (default: the first and the last), everything else copied.

    student = create_student(teacher, decoder_layers=[0, -1])
    student.save_pretrained("exp/mini_cs/student_init")   # loads in the transformers ASR pipeline
"""

from __future__ import annotations

import copy

from transformers import WhisperForConditionalGeneration


def resolve_layers(layers: list[int], num_layers: int) -> list[int]:
    """Teacher layer indices, negative ones counted from the end; must be distinct and in range."""
    resolved = [i + num_layers if i < 0 else i for i in layers]
    if not resolved or any(not 0 <= i < num_layers for i in resolved) or len(set(resolved)) != len(resolved):
        raise ValueError(f"decoder layers {layers} are not distinct layers of a {num_layers}-layer decoder")
    return resolved


def create_student(
    teacher: WhisperForConditionalGeneration, decoder_layers: list[int] = (0, -1), freeze_encoder: bool = True,
    freeze_decoder_positions: bool = True, freeze_token_embedding: bool = False,
) -> WhisperForConditionalGeneration:
    """The student of `teacher`. With `freeze_encoder` the encoder (position embeddings included) stays as
    copied; with `freeze_decoder_positions` so do the decoder's learned position embeddings, as the K2D
    authors trained (distil-whisper's --freeze_embed_positions). The teacher's alignment heads point into
    decoder layers the student does not have: the student gets openai's default instead, every head of
    its upper half of layers, so word-level timestamps work. With `freeze_token_embedding` the token
    embedding, tied to the output projection, stays the teacher's (cheaper steps: no gradient for the
    vocabulary-sized matrix, which is about half the student's trainable parameters)."""
    layers = resolve_layers(list(decoder_layers), teacher.config.decoder_layers)
    config = copy.deepcopy(teacher.config)
    config.decoder_layers = len(layers)
    student = WhisperForConditionalGeneration(config).to(teacher.dtype)
    student.model.encoder.load_state_dict(teacher.model.encoder.state_dict())
    teacher_decoder, student_decoder = teacher.model.decoder, student.model.decoder
    student_decoder.embed_tokens.load_state_dict(teacher_decoder.embed_tokens.state_dict())
    student_decoder.embed_positions.load_state_dict(teacher_decoder.embed_positions.state_dict())
    student_decoder.layer_norm.load_state_dict(teacher_decoder.layer_norm.state_dict())
    for target, source in zip(student_decoder.layers, layers, strict=True):
        target.load_state_dict(teacher_decoder.layers[source].state_dict())
    student.tie_weights()  # the output projection shares the token embedding, as in Whisper
    student.generation_config = copy.deepcopy(teacher.generation_config)
    student.generation_config.alignment_heads = default_alignment_heads(len(layers), config.decoder_attention_heads)
    if freeze_encoder:
        student.model.encoder.requires_grad_(False)  # position embeddings included
    if freeze_decoder_positions:
        student_decoder.embed_positions.requires_grad_(False)
    if freeze_token_embedding:
        student_decoder.embed_tokens.requires_grad_(False)  # and so the tied output projection
    return student.to(teacher.device)


def default_alignment_heads(decoder_layers: int, heads: int) -> list[list[int]]:
    """openai's choice for a model without tuned alignment heads: every head of the upper half of layers."""
    return [[layer, head] for layer in range(decoder_layers // 2, decoder_layers) for head in range(heads)]
