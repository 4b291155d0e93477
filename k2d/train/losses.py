"""Losses: cross-entropy on labels, KL(teacher || student) at a temperature, and auxiliary CTC.

    loss = beta * CE(student, labels) + gamma * T^2 * KL(softmax(teacher / T) || softmax(student / T))

Both terms are averaged over the label tokens that take a loss (not padding, not the prompt or forced
prefix). gamma = 0 is plain supervised training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from k2d.train.labels import IGNORE_INDEX


def at_loss_tokens(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x[mask] as (tokens, ...); a view, not a copy, when every token takes a loss (k2d's model passes only
    those: an all-true mask would copy the vocabulary-sized logits and scatter their gradient back)."""
    return x.reshape(-1, *x.shape[mask.dim():]) if bool(mask.all()) else x[mask]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean token cross-entropy over targets != IGNORE_INDEX. logits (..., V), targets (...)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def kl_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T^2 * KL(teacher || student) of the temperature-softened distributions, mean over loss tokens."""
    mask = targets != IGNORE_INDEX
    student_log_probs = F.log_softmax(at_loss_tokens(student_logits, mask).float() / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(at_loss_tokens(teacher_logits, mask).float() / temperature, dim=-1)
    per_token = (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(-1)
    return per_token.mean() * temperature**2 if per_token.numel() else student_logits.sum() * 0.0


def kl_divergence_topk(
    student_logits: torch.Tensor, teacher_logprobs: torch.Tensor, teacher_ids: torch.Tensor, targets: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """T^2 * KL(teacher || student) from the teacher's cached top-k log-probabilities at temperature T.

    Both distributions are coarsened to the k stored tokens plus one "rest" class, so the value is exact
    when the teacher puts no mass outside its top k (and never more than the full KL)."""
    mask = targets != IGNORE_INDEX
    if not bool(mask.any()):
        return student_logits.sum() * 0.0
    student_log_probs = F.log_softmax(at_loss_tokens(student_logits, mask).float() / temperature, dim=-1)
    teacher_top = at_loss_tokens(teacher_logprobs, mask).float()
    student_top = student_log_probs.gather(-1, at_loss_tokens(teacher_ids, mask))
    per_token = (teacher_top.exp() * (teacher_top - student_top)).sum(-1)
    teacher_rest = (1 - teacher_top.exp().sum(-1)).clamp(min=0.0)
    student_rest = (1 - student_top.exp().sum(-1)).clamp(min=1e-12)
    rest = torch.where(teacher_rest > 1e-6, teacher_rest * (teacher_rest.clamp(min=1e-12).log() - student_rest.log()),
                       torch.zeros_like(teacher_rest))
    return (per_token + rest).mean() * temperature**2


def ctc_loss(
    log_probs: torch.Tensor, frame_lengths: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor,
    blank: int,
) -> torch.Tensor:
    """CTC over the examples whose target length is > 0, averaged per target token."""
    use = target_lengths > 0
    if not bool(use.any()):
        return log_probs.sum() * 0.0
    loss = F.ctc_loss(
        log_probs[use].transpose(0, 1).float(), targets[use], frame_lengths[use], target_lengths[use],
        blank=blank, reduction="sum", zero_infinity=True,
    )
    return loss / target_lengths[use].sum()


def token_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    mask = targets != IGNORE_INDEX
    return (logits.argmax(-1)[mask] == targets[mask]).float().mean()
