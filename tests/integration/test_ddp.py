"""Multi-process training: a 2-process DDP step on CPU (gloo) averages gradients across ranks."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from k2d.models.student import create_student
from tests.unit.test_training import make_trainer

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


def test_two_process_ddp_step_on_cpu(tiny_whisper, tiny_cuts, tmp_path):
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_ddp_worker, args=(2, _free_port(), tiny_whisper, tiny_cuts, tmp_path / "ddp", results), nprocs=2)
    first, second = results[0], results[1]
    start = create_student(tiny_whisper[0], [0, -1]).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)  # gradients were averaged across ranks
    assert any(not torch.equal(first[k], start[k]) for k in first)  # and a step was taken
