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
    teacher: WhisperForConditionalGeneration, decoder_layers: list[int] = (0, -1), freeze_encoder: bool = True
) -> WhisperForConditionalGeneration:
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
    if freeze_encoder:
        student.model.encoder.requires_grad_(False)  # position embeddings included
    return student.to(teacher.device)
