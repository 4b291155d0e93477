"""Multi-process training: a 2-process DDP step on CPU (gloo) averages gradients across ranks."""

import os
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

from k2d.models.student import create_student
from tests.helpers import make_trainer

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world_size, port, tiny_whisper, cuts_path, out_dir, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank))
    from k2d.train.trainer import init_distributed

    init_distributed(torch.device("cpu"))
    trainer = make_trainer(tiny_whisper, cuts_path, out_dir, max_steps=2)
    trainer.fit()
    results[rank] = {k: v.clone() for k, v in trainer.model.student.state_dict().items()}
    torch.distributed.destroy_process_group()


def _validating_worker(rank, world_size, port, tiny_whisper, cuts_path, out_dir, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank))
    from k2d.train.trainer import init_distributed

    init_distributed(torch.device("cpu"))
    validations = []
    # as in k2d.distill: only rank 0 has validation data
    validate = (lambda student: validations.append(1) or {"mer": 1.0 / len(validations)}) if rank == 0 else None
    trainer = make_trainer(tiny_whisper, cuts_path, out_dir, max_steps=3, validate=validate)
    trainer.config.valid_every = 1
    results[rank] = trainer.fit().step
    torch.distributed.destroy_process_group()


def test_ddp_with_validation_on_rank_0_only_does_not_hang(tiny_whisper, tiny_cuts, tmp_path):
    """Regression: rank 1 (no validation data) skipped the barrier rank 0 waits at after validating."""
    results = mp.Manager().dict()
    context = mp.spawn(_validating_worker, args=(2, _free_port(), tiny_whisper, tiny_cuts, tmp_path / "ddp", results),
                       nprocs=2, join=False)
    deadline = time.time() + 180
    while not context.join(timeout=5):
        if time.time() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the DDP job hung: the ranks disagree about validating")
    assert dict(results) == {0: 3, 1: 3}


def test_two_process_ddp_step_on_cpu(tiny_whisper, tiny_cuts, tmp_path):
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_ddp_worker, args=(2, _free_port(), tiny_whisper, tiny_cuts, tmp_path / "ddp", results), nprocs=2)
    first, second = results[0], results[1]
    start = create_student(tiny_whisper[0], [0, -1]).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)  # gradients were averaged across ranks
    assert any(not torch.equal(first[k], start[k]) for k in first)  # and a step was taken
