"""The pieces of encoder distillation from teacher embeddings (seed 002; the streaming KD of seed 003 reuses
them): frame-rate matching, the shift of a streaming student, the regression and codebook losses, k-means
codebooks. Pure tensor functions; the ESPnet model (k2d.mtkd.task) puts them together.

Frames: a teacher at 50 Hz against a student at 25 Hz (4x subsampling of 10 ms features) is matched by
stacking each 2 successive teacher frames into one target of twice the width. Shift: with delta > 0 the
student's frame t predicts the teacher's (stacked) frame t - delta, so a streaming student is asked only
about audio it has already seen.
"""

from __future__ import annotations

import torch


def stack_frames(frames: torch.Tensor, lengths: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D) -> (B, T // factor, factor * D): each `factor` successive frames side by side (a last,
    incomplete group is dropped); lengths become lengths // factor."""
    if factor == 1:
        return frames, lengths
    batch, time, dim = frames.shape
    time = time // factor * factor
    return frames[:, :time].reshape(batch, time // factor, factor * dim), lengths // factor


def frame_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def normalize_per_utterance(frames: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(B, T, D) frames -> each utterance's dimensions to mean 0 and variance 1 over its valid frames (padding
    stays 0). Why: a Whisper encoder's frames share a large constant part (the mean frame alone has cosine
    0.5 with them on mini_cs), so a raw regression target rewards predicting it; what varies within an
    utterance is what carries the speech."""
    mask = frame_mask(lengths, frames.shape[1]).unsqueeze(-1).to(frames.dtype)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1)
    mean = (frames * mask).sum(dim=1, keepdim=True) / count
    variance = (((frames - mean) * mask) ** 2).sum(dim=1, keepdim=True) / count
    return (frames - mean) / (variance + eps).sqrt() * mask


def shifted_pairs(student: torch.Tensor, student_lengths: torch.Tensor, target: torch.Tensor,
                  target_lengths: torch.Tensor, delta: int = 0):
    """Student frames t and the target frames t - delta they predict, over the frames both have.

    Returns (prediction, target, mask), each of time length min(S - delta, T), mask (B, time) true where
    frame t < student length and t - delta < target length."""
    if delta < 0:
        raise ValueError(f"the shift delta must be >= 0 (the student predicts the past), got {delta}")
    time = max(0, min(student.shape[1] - delta, target.shape[1]))
    prediction = student[:, delta : delta + time]
    target = target[:, :time]
    mask = frame_mask(student_lengths - delta, time) & frame_mask(target_lengths, time)
    return prediction, target, mask


def l1_cosine_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                   cosine: str = "linear", cosine_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """Mean L1 over the valid frames' dimensions plus, per frame, (1 - cos) (`linear`) or -log sigmoid(cos)
    (`logsigmoid`, DistilHuBERT's form), weighted by cosine_weight; returns (loss, {"l1", "cos"})."""
    frames = mask.sum().clamp(min=1)
    valid = mask.unsqueeze(-1).to(prediction.dtype)
    l1 = ((prediction - target.to(prediction.dtype)).abs() * valid).sum() / (frames * prediction.shape[-1])
    cos = torch.nn.functional.cosine_similarity(prediction, target.to(prediction.dtype), dim=-1)
    if cosine == "linear":
        cos_term = 1 - cos
    elif cosine == "logsigmoid":
        cos_term = -torch.nn.functional.logsigmoid(cos)
    else:
        raise ValueError(f"cosine must be linear or logsigmoid, got {cosine!r}")
    cos_loss = (cos_term * mask).sum() / frames
    return l1 + cosine_weight * cos_loss, {"l1": l1.detach(), "cos": (cos * mask).sum().detach() / frames}


def kmeans(samples: torch.Tensor, size: int, iterations: int = 20, seed: int = 0) -> torch.Tensor:
    """(size, D) centroids of (N, D) samples: k-means++ seeding, then Lloyd iterations (an empty cluster
    takes the sample farthest from its centroid)."""
    if samples.shape[0] < size:
        raise ValueError(f"k-means with {size} centroids needs at least {size} samples, got {samples.shape[0]}")
    generator = torch.Generator().manual_seed(seed)
    samples = samples.float()
    centroids = samples[torch.randint(samples.shape[0], (1,), generator=generator)]
    while centroids.shape[0] < size:
        distance = torch.cdist(samples, centroids).min(dim=1).values ** 2
        weights = distance if distance.sum() > 0 else torch.ones_like(distance)
        pick = torch.multinomial(weights, 1, generator=generator)
        centroids = torch.cat([centroids, samples[pick]])
    for _ in range(iterations):
        distance = torch.cdist(samples, centroids)
        assignment = distance.argmin(dim=1)
        for k in range(size):
            members = samples[assignment == k]
            if len(members):
                centroids[k] = members.mean(dim=0)
            else:
                centroids[k] = samples[distance.min(dim=1).values.argmax()]
    return centroids


def assign_codes(frames: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """(..., D) frames -> (...) index of the nearest centroid (Euclidean)."""
    flat = frames.reshape(-1, frames.shape[-1]).float()
    return torch.cdist(flat, centroids.float().to(flat.device)).argmin(dim=1).reshape(frames.shape[:-1])


def codebook_loss(logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Cross-entropy of (B, T, G * K) logits against (B, T, G) codes (G stacked teacher frames per student
    frame, K codebook entries), over the valid frames; returns (loss, {"acc"})."""
    groups = codes.shape[-1]
    logits = logits.reshape(*logits.shape[:2], groups, -1)
    valid = mask.unsqueeze(-1).expand_as(codes)
    loss = torch.nn.functional.cross_entropy(logits[valid], codes[valid])
    accuracy = (logits[valid].argmax(-1) == codes[valid]).float().mean()
    return loss, {"acc": accuracy.detach()}
