"""Helpers several test modules share (fixtures are in conftest.py): tiny cuts, the tiny mini_cs
configuration and corpus, a tiny trainer."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import yaml

TINY_CORPUS = {
    "seed": 11, "train_labelled_utterances": 4, "dev_utterances": 2, "train_unlabelled_recordings": 2,
    "train_unlabelled_minutes": 0.4, "test_recordings": 1, "test_minutes": 0.25,
}


def write_tiny_cuts(directory: Path, count: int = 8, seconds: float = 2.0) -> Path:
    """`count` short noisy recordings with one generated sentence each, as a lhotse cuts manifest."""
    import numpy as np
    import soundfile as sf
    from lhotse import CutSet, Recording, SupervisionSegment

    from k2d.recipes.mini_cs.text import generate_sentence

    directory.mkdir(parents=True, exist_ok=True)
    text_rng = random.Random(0)
    audio_rng = np.random.default_rng(0)
    cuts = []
    for i in range(count):
        path = directory / f"utt{i}.flac"
        samples = (audio_rng.standard_normal(int(16000 * seconds)) * 0.05).astype("float32")
        sf.write(path, samples, 16000)
        recording = Recording.from_file(path, recording_id=f"utt{i}")
        cut = recording.to_cut()
        cut.supervisions = [SupervisionSegment(f"utt{i}-0", f"utt{i}", 0.2, seconds - 0.4,
                                               text=generate_sentence(text_rng).text)]
        cuts.append(cut)
    path = directory / "cuts.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(path)
    return path


def write_tiny_conf(repo_root, conf):
    shutil.copytree(repo_root / "egs" / "mini_cs" / "conf", conf)
    (conf / "prepare.yaml").write_text(yaml.safe_dump(TINY_CORPUS))
    distill = yaml.safe_load((conf / "distill.yaml").read_text())
    distill.update(max_steps=2, warmup_steps=1, valid_every=2, checkpoint_every=1, max_duration=40, num_workers=0,
                   valid_max_cuts=3, valid_percent=20.0)
    (conf / "distill.yaml").write_text(yaml.safe_dump(distill))
    (conf / "report.yaml").write_text(yaml.safe_dump({"bench_seconds": 8, "bench_runs": 1, "bench_batch_size": 2}))


def tiny_corpus(repo_root, tmp_path):
    """Stage 0 of mini_cs at the tiny size into tmp_path/work (the recipes built on mini_cs start from it)."""
    work = tmp_path / "work"
    write_tiny_conf(repo_root, tmp_path / "mini_cs_conf")
    stage0 = subprocess.run(["./run.sh", "--conf-dir", str(tmp_path / "mini_cs_conf"), "--work-dir", str(work),
                             "--stop-stage", "0"], cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert stage0.returncode == 0, stage0.stderr[-3000:]
    return work


def make_trainer(tiny_whisper, cuts_path, out_dir, max_steps, callbacks=None, gamma=1.0, validate=None):
    """A trainer of a 2-layer student of the tiny teacher (heavy imports here: conftest imports this module
    before transformers may be imported)."""
    import torch
    from lhotse import CutSet

    from k2d.models.student import create_student
    from k2d.train.data import Collator, CutDataset, LabelOptions, make_sampler
    from k2d.train.model import WhisperKDModel
    from k2d.train.trainer import TrainConfig, Trainer

    teacher, processor = tiny_whisper
    torch.manual_seed(0)
    student = create_student(teacher, [0, -1])
    model = WhisperKDModel(student, teacher, gamma=gamma)
    sampler = make_sampler(CutSet.from_file(cuts_path), max_duration=4.0, num_buckets=2, seed=3)
    tokenizer = processor.tokenizer
    collator = Collator(processor.feature_extractor, tokenizer.eos_token_id)
    dataset = CutDataset(tokenizer, collator, LabelOptions(window=10.0))
    config = TrainConfig(learning_rate=1e-3, warmup_steps=2, max_steps=max_steps, checkpoint_every=3, valid_every=1000,
                         num_workers=0)
    return Trainer(model, sampler, dataset, out_dir, config, torch.device("cpu"), callbacks=callbacks,
                   validate=validate)
