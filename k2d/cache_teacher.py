"""Stage 5 preparation: the teacher's outputs for every chunk a student trains on, computed once and stored.

    python -m k2d.cache_teacher --teacher egs/mini_cs/models/teacher \\
        --cuts data/mini_cs/cuts/mini_cs_cuts_train_unlabelled-validated.jsonl.gz \\
        --kept data/mini_cs/cuts/mini_cs_cuts_train_unlabelled-k2d_{none,composite}.jsonl.gz \\
        --config egs/mini_cs/conf/distill.yaml \\
        --output data/mini_cs/cuts/mini_cs_cuts_train_unlabelled-teacher.jsonl.gz [--dry-run]

The K2D student shares the teacher's encoder, frozen. Its output for a chunk is therefore the same in every
epoch and for every filter metric's student: it is computed here once per chunk (the chunks stage 4 kept for
at least one student, `--kept`, in stage 3's order, which the kept manifests share) and stored as float16.
This is exact, up to float16 rounding,
because the encoder is frozen and nothing augments its input; the cache is refused when the config unfreezes
the encoder. With `cache_topk > 0` the teacher decoder's top-k log-probabilities (at the KD temperature) are
stored too, for each label form a student can draw (with or without timestamps, with or without the
previous-text prompt), so training needs no teacher at all.

Storage: lhotse arrays (`numpy_hdf5`) in HDF5 files of `cache_block_size` chunks under OUTPUT's
`.teacher_cache/` directory, attached to the cuts of OUTPUT as custom fields (`teacher_encoder`,
`teacher_topk_<variant>`, and `teacher_cache` with k, T and the model). The whole window's encoder frames
are kept, padding included: the decoder's cross-attention sees all of them at inference too.
Resumable (a block is written whole, then its chunks are recorded) and sharded like stages 1 and 3.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import yaml
from lhotse import CutSet
from lhotse.array import Array
from tqdm import tqdm
from transformers import WhisperConfig

from k2d.audio import load_cut_audio
from k2d.config import add_config_arguments, parse_stage_args
from k2d.cuts import TEACHER_CACHE_FIELD, TEACHER_ENCODER_FIELD, ChunkFields, chunk_key, teacher_topk_field
from k2d.manifests import read_manifest
from k2d.models.names import resolve_model
from k2d.models.tokenizer import window_seconds
from k2d.models.whisper import add_device_argument
from k2d.progress import ShardJob, add_shard_arguments, run_sharded
from k2d.train.config import DistillConfig
from k2d.train.data import LabelOptions, training_view
from k2d.train.labels import IGNORE_INDEX, LABEL_VARIANTS, LabelTooLong, build_decoder_labels
from k2d.utils import array_block, atomic_path, remove_stray_temporaries, setup_logging

log = logging.getLogger("k2d.cache_teacher")

# ---- what to cache ----
def kept_ids(kept: list[Path]) -> set[str]:
    """The ids of the chunks stage 4 kept for any student."""
    return {cut.id for path in kept for cut in read_manifest(path, "cuts")}


def cache_key(cut, options: LabelOptions) -> str:
    """The chunk's progress key (chunk_key), and how much earlier its training window opens when it does
    (pause_open): changing which windows open early recomputes only those."""
    lead = round(cut.start - training_view(cut, options)[0].start, 3)
    return chunk_key(cut) + (f"<{lead:.3f}" if lead else "")


def label_variants(cut, tokenizer, options: LabelOptions) -> dict:
    """Every label form a student can draw for this cut: variant -> DecoderLabels (too-long ones left out)."""
    fields = ChunkFields.from_cut(cut)
    prev_text = fields.prev_text if fields is not None else None
    _, segments = training_view(cut, options)
    variants = {}
    for name in LABEL_VARIANTS:
        prompt = prev_text if name.endswith("_prompt") else None
        if name.endswith("_prompt") and not prompt:
            continue
        try:
            variants[name] = build_decoder_labels(tokenizer, segments, window=options.window,
                                                  language=options.language, timestamps=name.startswith("ts"),
                                                  prompt_text=prompt)
        except LabelTooLong:
            continue
    return variants


@torch.no_grad()
def teacher_topk(teacher, encoder_states: torch.Tensor, labels_list: list, k: int, temperature: float) -> list:
    """(len(targets), 2k) float32 arrays: top-k log-softmax(logits / T) and their ids, one per label."""
    length = max(len(labels.input_ids) for labels in labels_list)
    pad = teacher.config.pad_token_id
    input_ids = torch.full((len(labels_list), length), pad, dtype=torch.long)
    for i, labels in enumerate(labels_list):
        input_ids[i, : len(labels.input_ids)] = torch.tensor(labels.input_ids)
    logits = teacher(encoder_outputs=(encoder_states,), decoder_input_ids=input_ids.to(teacher.device)).logits
    values, ids = torch.log_softmax(logits.float() / temperature, dim=-1).topk(k, dim=-1)
    out = []
    for i, labels in enumerate(labels_list):
        n = len(labels.targets)
        stored = torch.cat([values[i, :n], ids[i, :n].float()], dim=-1).cpu().numpy()
        stored[np.array(labels.targets) == IGNORE_INDEX] = 0.0  # positions without a loss
        out.append(stored)
    return out


# ---- the stage ----
@dataclasses.dataclass
class CacheJob:
    teacher: object
    processor: object
    options: LabelOptions
    topk: int
    temperature: float


def cache_block(job: CacheJob, cuts: list, path: Path, batch_size: int) -> list[dict]:
    """Compute and store one block of chunks in one HDF5 file; return a progress record per chunk."""
    records = []
    with array_block(path) as writer:
        for first in range(0, len(cuts), batch_size):
            batch = cuts[first : first + batch_size]
            audios = [load_cut_audio(training_view(c, job.options)[0]) for c in batch]
            features = job.processor.feature_extractor(audios, sampling_rate=16000, return_tensors="pt").input_features
            with torch.no_grad():
                states = job.teacher.get_encoder()(features.to(job.teacher.device, job.teacher.dtype)).last_hidden_state
            states16 = states.to(torch.float16)
            for i, cut in enumerate(batch):
                writer.write(f"{cut.id}/encoder", states16[i].cpu().numpy())
                record = {"key": cache_key(cut, job.options), "encoder": list(states16[i].shape), "topk": {}}
                if job.topk:
                    variants = label_variants(cut, job.processor.tokenizer, job.options)
                    if variants:
                        repeated = states16[i : i + 1].to(job.teacher.dtype).expand(len(variants), -1, -1)
                        for name, stored in zip(variants, teacher_topk(job.teacher, repeated, list(variants.values()),
                                                                       job.topk, job.temperature), strict=True):
                            writer.write(f"{cut.id}/{name}", stored)
                            record["topk"][name] = list(stored.shape)
                records.append(record)
    for record in records:
        record["file"] = str(path)
    return records


def cache_chunks(teacher_name: str, device: str, config, options: LabelOptions, cuts: list,
                 storage: Path) -> Iterator[dict]:
    """The stage's work: store the teacher's outputs of `cuts`, block by block; a record per chunk."""
    import uuid

    from k2d.models.whisper import load_whisper

    teacher, processor = load_whisper(teacher_name, device=device, dtype=config.dtype, mix_lang_emb=config.mix_lang_emb)
    job = CacheJob(teacher, processor, options, config.cache_topk, config.temperature)
    storage.mkdir(parents=True, exist_ok=True)
    for stray in remove_stray_temporaries(storage):
        log.info("removed %s, a block a killed run left unfinished", stray)
    with tqdm(total=len(cuts), desc="cache teacher", unit="chunk") as bar:
        for first in range(0, len(cuts), config.cache_block_size):
            block = cuts[first : first + config.cache_block_size]
            yield from cache_block(job, block, storage / f"block-{uuid.uuid4().hex[:16]}.h5", config.cache_batch_size)
            bar.update(len(block))


def selected_cuts(cuts_path: Path, wanted: set[str] | None):
    """The chunks to cache in stage 3's order: those in `wanted` (every chunk when it is None)."""
    return (c for c in read_manifest(cuts_path, "cuts") if wanted is None or c.id in wanted)


def merge(records: list[dict], cuts, output: Path, info: dict) -> None:
    """The output manifest: the cached chunks, each with its arrays attached."""
    started = time.time()
    with atomic_path(output) as tmp, CutSet.open_writer(tmp) as writer:
        for cut, record in zip(cuts, records, strict=True):
            custom = dict(cut.custom or {})
            custom[TEACHER_ENCODER_FIELD] = Array("numpy_hdf5", record["file"], f"{cut.id}/encoder", record["encoder"])
            for name, shape in record["topk"].items():
                custom[teacher_topk_field(name)] = Array("numpy_hdf5", record["file"], f"{cut.id}/{name}", shape)
            custom[TEACHER_CACHE_FIELD] = info
            cut.custom = custom
            writer.write(cut)
    log.info("stage 5 preparation: teacher outputs of %d chunk(s) -> %s (merged in %.1f s)", len(records),
             output, time.time() - started)


def planned_bytes(cuts, config, d_model: int, frames: int) -> dict:
    """What the cache will hold, before anything is computed."""
    cuts = sum(1 for _ in cuts)
    encoder = cuts * frames * d_model * 2
    # top-k: at most 4 label forms of at most 448 positions, k float32 log-probs + k float32 ids each
    topk = cuts * 4 * 448 * config.cache_topk * 2 * 4 if config.cache_topk else 0
    return {"chunks": cuts, "encoder_bytes": encoder, "topk_bytes_at_most": topk,
            "per_chunk_encoder": f"{frames} x {d_model} float16"}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="teacher: Hugging Face id or local directory")
    parser.add_argument("--cuts", type=Path, required=True, help="validated chunk cuts (stage 3 output)")
    parser.add_argument("--kept", type=Path, nargs="*",
                        help="stage 4's kept chunks, one manifest per student: the chunks to cache (default: all)")
    parser.add_argument("--output", type=Path, required=True, help="cuts with the cached outputs (.jsonl.gz)")
    add_device_argument(parser)
    parser.add_argument("--dry-run", action="store_true", help="only print how much the cache will store")
    add_shard_arguments(parser)

    add_config_arguments(parser, DistillConfig)
    return parser


def main(argv: list[str] | None = None) -> int:

    setup_logging()
    parser = get_parser()
    args, config = parse_stage_args(parser, DistillConfig, argv)
    if not config.cache_teacher:
        log.info("cache_teacher is false in the config: no teacher cache (students run the teacher every step)")
        return 0
    if not config.freeze_encoder:
        parser.error("the teacher cache is exact only for a frozen encoder: freeze_encoder is false in the config")
    for path, stage in [(args.cuts, "3"), *((kept, "4") for kept in args.kept or [])]:
        if not path.is_file():
            log.error("%s does not exist (run stage %s first)", path, stage)
            return 1
    wanted = kept_ids(args.kept) if args.kept is not None else None

    def selected():
        return selected_cuts(args.cuts, wanted)

    model_config = WhisperConfig.from_pretrained(resolve_model(args.teacher))
    if args.dry_run:
        plan = planned_bytes(selected(), config, model_config.d_model, model_config.max_source_positions)
        print(yaml.safe_dump(plan, sort_keys=False), end="")
        print(f"total: about {(plan['encoder_bytes'] + plan['topk_bytes_at_most']) / 2**30:.2f} GiB")
        return 0
    info = {"model": str(args.teacher), "topk": config.cache_topk, "temperature": config.temperature,
            "dtype": "float16", "whole_window": config.whole_window, "pause_open": config.pause_open}
    options = LabelOptions.of(config, window_seconds(model_config.max_source_positions))
    storage = args.output.parent / ".teacher_cache" / args.output.name.split(".")[0]
    what = {name: getattr(config, name) for name in ("cache_topk", "temperature", "language", "mix_lang_emb",
                                                      "dtype", "freeze_encoder", "whole_window")}
    # what is cached grows with the chunks, the kept sets and the windows opened early: only the new is done
    kept = {f"kept {path.name}": path for path in args.kept or []}
    return run_sharded(
        ShardJob.from_args(args.output, args), items=selected, key=lambda cut: cache_key(cut, options),
        work=lambda todo: cache_chunks(args.teacher, args.device, config, options, todo, storage),
        merge=lambda records, _: merge(records, selected(), args.output, info), stage="teacher cache",
        inputs={"chunks": args.cuts, "teacher": resolve_model(args.teacher), "config": what, **kept,
                "windows": {"pause_open": config.pause_open}},
        growing=("chunks", "windows", *kept),
    )


if __name__ == "__main__":
    sys.exit(main())
