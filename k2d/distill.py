"""Stage 5: distil the teacher into a student on the kept chunks: loss = beta * CE + gamma * KL.

    python -m k2d.distill --teacher egs/mini_cs/models/teacher \\
        --train-cuts data/mini_cs/cuts/mini_cs_cuts_train_unlabelled-k2d_composite.jsonl.gz \\
        --out-dir exp/mini_cs/student_composite --config egs/mini_cs/conf/distill.yaml

    # several GPUs or nodes: the same command under torchrun
    torchrun --nproc-per-node 4 -m k2d.distill ... --device cuda

The student is the teacher's encoder (frozen) plus a decoder of the chosen teacher layers. OUT_DIR gets
best/ (the student with the lowest validation MER, a Hugging Face model directory), checkpoints/ (exact
resume), tensorboard/, train_config.yaml and summary.yaml (written last: its presence means done).
Validation uses a held-out share of the training chunks (MER against their pseudo-labels) unless
--valid-cuts gives a labelled set.
"""

from __future__ import annotations

import argparse
import functools
import logging
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import torch
import yaml
from lhotse import CutSet

from k2d import provenance
from k2d.audio import labelled_cut, load_cut_audio
from k2d.config import ConfigError, add_config_arguments, parse_stage_args, save_config
from k2d.cuts import TEACHER_CACHE_FIELD, ChunkFields, teacher_text
from k2d.models.names import resolve_model
from k2d.models.student import create_student
from k2d.models.tokenizer import window_seconds
from k2d.models.whisper import add_device_argument, count_parameters, load_whisper, resolve_device, save_model_dir
from k2d.train.config import DistillConfig
from k2d.train.data import Collator, CutDataset, LabelOptions, make_sampler, training_view
from k2d.train.labels import label_fits
from k2d.train.model import WhisperKDModel
from k2d.train.trainer import Stopped, Trainer, init_distributed, rank
from k2d.train.validation import add_longform_validation_arguments, decode_mer, longform_validator
from k2d.utils import AlreadyRunning, DiskFullError, atomic_path, setup_logging

log = logging.getLogger("k2d.distill")


def held_out(cut_id: str, percent: float) -> bool:
    """Deterministic split by a hash of the id, so every run and rank agrees."""
    return zlib.crc32(cut_id.encode()) % 10_000 < percent * 100


def not_held_out(cut, percent: float) -> bool:
    return not held_out(cut.id, percent)


def validation_items(args, config: DistillConfig) -> list:
    """(audio, reference) pairs; a continued chunk's audio stops where its label does."""
    if args.valid_cuts is not None:
        cuts = list(CutSet.from_file(args.valid_cuts))
    else:
        cuts = [c for c in CutSet.from_jsonl_lazy(args.train_cuts) if held_out(c.id, config.valid_percent)]
    return [(load_cut_audio(labelled_cut(c)), teacher_text(c)) for c in cuts[: config.valid_max_cuts]]


def too_long_labels(cuts, tokenizer, options: LabelOptions) -> set[str]:
    """Ids of the cuts whose label cannot fit the decoder's context: dropped from training, not truncated."""
    return {c.id for c in cuts
            if not label_fits(tokenizer, training_view(c, options)[1], options.window, options.language)}


def without_pauses(cuts) -> str | None:
    """The id of a chunk that does not record the pause before it (stage 2 of an older k2d), if any."""
    for cut in cuts:
        fields = ChunkFields.from_cut(cut)
        if fields is not None and fields.pause_before is None:
            return cut.id
    return None


def fits(cut, too_long: frozenset) -> bool:
    return cut.id not in too_long


def attach_cache(kept_path: Path, cache_path: Path, output: Path, windows: dict) -> int:
    """Write the kept cuts with their cached teacher outputs to OUTPUT. Both manifests list chunks in the
    order of stage 3's output, so one streaming pass joins them; a kept chunk missing from the cache, or
    cached for other training windows (`windows`: whole_window, pause_open), is an error. Returns the number
    of cuts written."""
    cached = iter(CutSet.from_jsonl_lazy(cache_path))
    count = 0
    with atomic_path(output) as tmp, CutSet.open_writer(tmp) as writer:
        for cut in CutSet.from_jsonl_lazy(kept_path):
            match = next((c for c in cached if c.id == cut.id), None)
            if match is None:
                raise RuntimeError(f"chunk {cut.id} of {kept_path} has no cached teacher outputs in {cache_path} "
                                   "(cached for other filter settings?): cache the teacher again with --force")
            cached_windows = {name: match.custom[TEACHER_CACHE_FIELD].get(name, 0.0) for name in windows}
            if cached_windows != windows:
                raise RuntimeError(f"{cache_path} was cached for training windows {cached_windows}, the config "
                                   f"asks for {windows}: cache the teacher again (run.sh's stage 5 does)")
            writer.write(match)
            count += 1
    return count


def train_by_espnet(args, config: DistillConfig, summary_path: Path, inputs: dict) -> int:
    """Stage 5 through ESPnet's own trainer (k2d.espnet.train), the same held-out split."""
    from k2d.espnet.train import train_with_espnet

    save_config(config, args.out_dir / "train_config.yaml")
    cuts = list(CutSet.from_jsonl_lazy(args.train_cuts))
    valid = (list(CutSet.from_file(args.valid_cuts)) if args.valid_cuts
             else [c for c in cuts if held_out(c.id, config.valid_percent)])
    train = [c for c in cuts if args.valid_cuts or not held_out(c.id, config.valid_percent)]
    try:
        summary = train_with_espnet(config, resolve_model(args.teacher), train, valid, args.out_dir,
                                    str(resolve_device(args.device)))
    except (RuntimeError, ConfigError, OSError, subprocess.CalledProcessError) as error:
        raise DistillError(str(error)) from None
    write_summary(summary_path, inputs, {**summary, "validation": f"{len(valid)} chunks"})
    log.info("stage 5 (ESPnet's trainer): student in %s", args.out_dir / "best")
    return 0


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="teacher: Hugging Face id or local directory")
    parser.add_argument("--train-cuts", type=Path, required=True, help="kept chunk cuts (stage 4 output)")
    parser.add_argument("--out-dir", type=Path, required=True, help="student directory (exp/NAME/student_METRIC)")
    parser.add_argument("--valid-cuts", type=Path, help="labelled cuts for validation (default: held-out chunks)")
    add_longform_validation_arguments(parser, "default: held-out chunks, short-form")
    parser.add_argument("--teacher-cache", type=Path,
                        help="cuts with the teacher's cached outputs (k2d.cache_teacher); train from them")
    add_device_argument(parser)
    parser.add_argument("--force", action="store_true", help="train again from scratch")
    add_config_arguments(parser, DistillConfig)
    return parser


class DistillError(Exception):
    """Stage 5 cannot go on; the message says why (logged, exit status 1)."""


def already_trained(args, summary_path: Path, inputs: dict) -> bool:
    """True when OUT_DIR holds a student trained from these inputs; an error when they changed since."""
    if not summary_path.exists() or args.force:
        return False
    changed = provenance.changes(summary_path, inputs)
    if changed:
        raise DistillError(f"stage 5: {' and '.join(changed)} changed since the student in {args.out_dir} was "
                           "trained; train it again with --force")
    log.info("%s exists: student already trained (use --force to redo)", summary_path)
    return True


def use_teacher_cache(args, config: DistillConfig) -> bool:
    """Point args.train_cuts at the kept chunks joined with the teacher cache; whether top-k is cached."""
    if not config.cache_teacher:
        args.teacher_cache = None
    if args.teacher_cache is None:
        return False
    if not config.freeze_encoder:
        raise DistillError("cached teacher outputs are exact only for a frozen encoder: freeze_encoder is false")
    train_path = args.out_dir / "train_cuts.jsonl.gz"
    try:
        count = attach_cache(args.train_cuts, args.teacher_cache, train_path,
                             {"whole_window": config.whole_window, "pause_open": config.pause_open})
    except RuntimeError as error:
        raise DistillError(str(error)) from None
    log.info("training from cached teacher outputs: %d chunks -> %s", count, train_path)
    args.train_cuts = train_path
    return config.cache_topk > 0


def load_models(args, config: DistillConfig):
    """(teacher, processor, student), both on the CPU: the teacher reaches the training device only when its
    decoder is needed there (no cached top-k), so a device too small for both can still train the student."""
    try:
        teacher, processor = load_whisper(args.teacher, device="cpu", dtype=config.dtype,
                                          mix_lang_emb=config.mix_lang_emb)
        student = create_student(teacher, config.decoder_layers, config.freeze_encoder,
                                 config.freeze_decoder_positions, config.freeze_token_embedding)
    except (RuntimeError, FileNotFoundError, ValueError) as error:
        raise DistillError(str(error)) from None
    return teacher, processor, student


def training_data(args, config: DistillConfig, processor, window: float):
    """(sampler, dataset, ids of chunks left out because their labels do not fit the decoder's context)."""
    train_cuts = CutSet.from_jsonl_lazy(args.train_cuts)
    options = LabelOptions.of(config, window)
    unknown = without_pauses(train_cuts) if options.pause_open else None
    if unknown is not None:  # no window of it would open early: less than the config asks
        raise DistillError(f"pause_open {options.pause_open} needs the pause before each chunk, which chunk {unknown} "
                           f"of {args.train_cuts} lacks (chunked by an older k2d): run stage 2 again with --force "
                           "(stages 3-4 then reuse their work), or set pause_open: 0")
    too_long = frozenset(too_long_labels(train_cuts, processor.tokenizer, options))
    if too_long:
        log.warning("%d chunk(s) have labels longer than the decoder's context: left out (e.g. %s)",
                    len(too_long), min(too_long))
    train_cuts = train_cuts.filter(functools.partial(fits, too_long=too_long))
    if args.valid_cuts is None:
        train_cuts = train_cuts.filter(functools.partial(not_held_out, percent=config.valid_percent))
    try:
        sampler = make_sampler(train_cuts, config.max_duration, config.num_buckets, config.seed)
    except RuntimeError as error:
        raise DistillError(f"{error} in {args.train_cuts} (did the filter keep nothing?)") from None
    tokenizer = processor.tokenizer
    dataset = CutDataset(tokenizer, Collator(processor.feature_extractor, tokenizer.eos_token_id), options)
    return sampler, dataset, too_long


def validation(args, config: DistillConfig, processor):
    """(validate(student) -> MER or None, what it validates on): long-form dev recordings when given, else
    held-out chunks; only rank 0 validates."""
    if rank() != 0:
        return None, "none"
    try:
        longform = longform_validator(args, processor, config.language)
    except (ConfigError, OSError, ValueError) as error:
        raise DistillError(str(error)) from None
    if longform is not None:
        return longform, f"{args.valid_recordings} (long-form)"
    valid = validation_items(args, config)
    if not valid:
        log.warning("no validation chunks (valid_percent %.1f%% of %s held out none, or --valid-cuts is empty): "
                    "best/ will be the model of the last step, not one chosen by validation", config.valid_percent,
                    args.train_cuts)
        return None, "none: best/ is the last step"
    return ((lambda s: decode_mer(s, processor, valid, config.language)),
            str(args.valid_cuts) if args.valid_cuts else f"{len(valid)} held-out chunks")


def write_summary(summary_path: Path, inputs: dict, summary: dict) -> None:
    with atomic_path(summary_path) as tmp:
        tmp.write_text(yaml.safe_dump(summary, sort_keys=False), encoding="utf-8")
    provenance.write_record(summary_path, inputs)


def distill(args, config: DistillConfig, summary_path: Path, inputs: dict) -> int:
    if already_trained(args, summary_path, inputs):
        return 0
    if args.force and rank() == 0:
        shutil.rmtree(args.out_dir, ignore_errors=True)
    if not args.train_cuts.is_file():
        raise DistillError(f"training cuts {args.train_cuts} do not exist (run stage 4 first)")
    if config.trainer == "espnet":
        return train_by_espnet(args, config, summary_path, inputs)
    device = init_distributed(resolve_device(args.device))
    torch.manual_seed(config.seed)
    cached_topk = use_teacher_cache(args, config)
    teacher, processor, student = load_models(args, config)
    sizes = {"teacher_parameters": count_parameters(teacher), "student_parameters": count_parameters(student)}
    log.info("student: decoder layers %s of the teacher; %.2fM parameters vs the teacher's %.2fM (%.2fx smaller)",
             config.decoder_layers, sizes["student_parameters"] / 1e6, sizes["teacher_parameters"] / 1e6,
             sizes["teacher_parameters"] / sizes["student_parameters"])
    save_config(config, args.out_dir / "train_config.yaml")
    sampler, dataset, too_long = training_data(args, config, processor,
                                               window_seconds(teacher.config.max_source_positions))
    validate, validated_on = validation(args, config, processor)
    kd_teacher = None if cached_topk or config.gamma == 0 else teacher.to(device)
    model = WhisperKDModel(student.to(device), kd_teacher, beta=config.beta, gamma=config.gamma,
                           temperature=config.temperature)
    del teacher
    log.info("KD: beta %.2f CE + gamma %.2f KL at T=%.1f; encoder %s; teacher %s", config.beta, config.gamma,
             config.temperature, "cached" if args.teacher_cache else (
                 "shared with the teacher (runs once per batch)" if model.share_encoder else "run separately"),
             "top-k cached (not loaded)" if cached_topk else "decoder run per batch")
    trainer = Trainer(model, sampler, dataset, args.out_dir, config, device, validate=validate,
                      save_best=lambda s, out: save_model_dir(s, processor, out))
    try:
        state = trainer.fit()
    except (DiskFullError, AlreadyRunning) as error:  # a full disk (checkpoints), a second run in OUT_DIR
        raise DistillError(str(error)) from None
    except Stopped as stopped:  # SIGTERM: checkpointed; the same command resumes
        return 128 + stopped.signum
    if rank() == 0:
        validated = validate is not None
        write_summary(summary_path, inputs, {
            **sizes, "steps": state.step, "best_step": state.best_step,
            "best_valid_mer": state.best_mer if validated else None, "plateaued": state.plateaued,
            "train_seconds": round(state.train_seconds, 1), "dropped_too_long_labels": len(too_long),
            "validation": validated_on})
        log.info("stage 5: student in %s (%s)", args.out_dir / "best",
                 f"best validation MER {state.best_mer:.4f} at step {state.best_step}" if validated
                 else f"the last step, {state.step}: no validation data")
    return 0


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args, config = parse_stage_args(get_parser(), DistillConfig, argv)
    inputs = {"training chunks": args.train_cuts, "teacher": resolve_model(args.teacher), "config": config}
    try:
        return distill(args, config, args.out_dir / "summary.yaml", inputs)
    except DistillError as error:
        log.error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
