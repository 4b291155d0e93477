"""k-means codebooks of teacher embeddings, for encoder KD with codebook-index targets (seed 002's second loss).

    python -m k2d.mtkd.codebooks --embeddings data/mini_cs_mtkd/embeddings/pretrain.jsonl.gz --size 64 \\
        --output exp/mini_cs_mtkd/codebooks.safetensors [--sample-frames 20000]

For each target of the embeddings manifest (k2d.mtkd.embed), centroids fitted on a random sample of its frames
(k-means++ seeding, Lloyd iterations; seeded, so the same input gives the same codebooks). The file holds
one (size, dim) float32 tensor per target; `model_conf: {loss: codebook, codebooks: FILE}` of
k2d.mtkd.task uses it to turn each teacher frame into the index of its nearest centroid.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from k2d.manifests import read_manifest
from k2d.mtkd.embed import embedding_targets, load_embedding
from k2d.mtkd.losses import kmeans
from k2d.utils import atomic_path, setup_logging

log = logging.getLogger("k2d.mtkd.codebooks")


def sample_frames(cuts, target: str, count: int, seed: int) -> torch.Tensor:
    """Up to `count` frames of `target`, drawn uniformly from every cut's frames (reservoir sampling, so the
    manifest streams)."""
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    seen = 0
    for cut in cuts:
        for frame in load_embedding(cut, target).astype(np.float32):
            if len(chosen) < count:
                chosen.append(frame)
            else:
                slot = rng.integers(seen + 1)
                if slot < count:
                    chosen[slot] = frame
            seen += 1
    return torch.from_numpy(np.stack(chosen)) if chosen else torch.empty(0)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", type=Path, required=True, help="cuts with embeddings (k2d.mtkd.embed output)")
    parser.add_argument("--size", type=int, default=64, help="centroids per codebook")
    parser.add_argument("--sample-frames", type=int, default=20000, help="frames sampled per target to fit on")
    parser.add_argument("--iterations", type=int, default=20, help="k-means iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, required=True, help="codebooks (.safetensors)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from safetensors.torch import save_file

    setup_logging()
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.size < 2 or args.sample_frames < args.size or args.iterations < 1:
        parser.error("--size must be at least 2, --sample-frames at least --size, --iterations at least 1")
    try:
        first = next(iter(read_manifest(args.embeddings, "cuts")), None)
        if first is None or not embedding_targets(first):
            log.error("%s has no cuts with embeddings (run python -m k2d.mtkd.embed first)", args.embeddings)
            return 1
        books = {}
        for target in embedding_targets(first):
            frames = sample_frames(read_manifest(args.embeddings, "cuts"), target, args.sample_frames, args.seed)
            if frames.shape[0] < args.size:
                log.error("%s: only %d frames of %s for %d centroids", args.embeddings, frames.shape[0], target,
                          args.size)
                return 1
            books[target] = kmeans(frames, args.size, args.iterations, args.seed).contiguous()
            log.info("codebook %s: %d centroids of dim %d from %d frames", target, args.size, frames.shape[1],
                     frames.shape[0])
    except (FileNotFoundError, RuntimeError, KeyError) as error:
        log.error("%s", error)
        return 1
    with atomic_path(args.output) as tmp:
        save_file(books, str(tmp))
    log.info("codebooks -> %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
