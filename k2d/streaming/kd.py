"""The pieces of streaming KD (seed 003): chunk-wise attention masks, the APC pairing of a streaming frame with
the teacher frame N ahead, frame-level token distillation and CTC greedy emission. Pure tensor functions; the
ESPnet model (k2d.streaming.task) and the streaming decoder (k2d.streaming.stream) put them together.

Chunks: the encoder's frames are cut into chunks of `chunk` frames; frame t sees every frame of its own chunk
and of the `left_chunks` chunks before it (all earlier chunks when left_chunks < 0), never a later chunk. The
decoder can therefore emit a chunk's output as soon as the chunk's last frame has arrived, and that output
never changes when more audio comes. chunk = 0 is full context (the non-streaming teacher).
"""

from __future__ import annotations

import torch


def chunk_mask(size: int, chunk: int, left_chunks: int = -1, device=None) -> torch.Tensor:
    """(size, size) bool: [t, s] true where frame t may attend to frame s."""
    if chunk <= 0:
        return torch.ones(size, size, dtype=torch.bool, device=device)
    block = torch.arange(size, device=device) // chunk
    seen = block[None, :] <= block[:, None]
    if left_chunks >= 0:
        seen &= block[None, :] >= block[:, None] - left_chunks
    return seen


def future_pairs(student: torch.Tensor, student_lengths: torch.Tensor, target: torch.Tensor,
                 target_lengths: torch.Tensor, ahead: int):
    """APC: student frame t and the target frame t + ahead it predicts, over the frames both have.

    Returns (prediction, target, mask) of time length min(S, T - ahead); mask true where frame t < student
    length and t + ahead < target length."""
    if ahead < 1:
        raise ValueError(f"APC predicts at least one frame ahead, got {ahead}")
    time = max(0, min(student.shape[1], target.shape[1] - ahead))
    steps = torch.arange(time, device=student.device)[None, :]
    mask = (steps < student_lengths[:, None]) & (steps + ahead < target_lengths[:, None])
    return student[:, :time], target[:, ahead : ahead + time], mask


def frame_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, mask: torch.Tensor,
             temperature: float = 1.0) -> torch.Tensor:
    """Token-probability distillation: KL(teacher || student) of the per-frame output distributions at
    `temperature` (scaled by its square), averaged over the valid frames."""
    teacher = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
    student = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = (teacher.exp() * (teacher - student)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1) * temperature**2


def ctc_collapse(frame_tokens: list[int], previous: int | None = None,
                 blank: int = 0) -> tuple[list[int], list[int], int | None]:
    """CTC greedy output of frames that follow a frame whose best token was `previous`: repeats merged, blanks
    dropped. Returns (tokens, the frame index of each, the last frame's token) so that the next piece continues
    where this one ended."""
    tokens, frames = [], []
    for frame, token in enumerate(frame_tokens):
        if token != previous and token != blank:
            tokens.append(token)
            frames.append(frame)
        previous = token
    return tokens, frames, previous
