"""The K²D student trained by ESPnet's own trainer (k2d.espnet.asr_kd): the task builds from YAML, its
training lowers the loss, gives k2d's trainer's losses on the same batches, and its checkpoint becomes a
Hugging Face model that decodes."""

import argparse

import numpy as np
import pytest
import torch
import yaml
from lhotse import CutSet

from k2d import distill
from k2d.cuts import ChunkFields
from k2d.espnet.asr_kd import ASRKDTask, ESPnetWhisperKD
from k2d.espnet.data_dir import check_data_dir, write_data_dir
from k2d.models.whisper import save_model_dir
from tests.helpers import write_tiny_cuts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tiny_whisper):
    path = tmp_path_factory.mktemp("teacher") / "tiny"
    save_model_dir(*tiny_whisper, path)
    return path


@pytest.fixture
def chunk_cuts(tmp_path):
    cuts = list(CutSet.from_file(write_tiny_cuts(tmp_path / "audio", count=4)))
    for cut in cuts:
        sup = cut.supervisions[0]
        cut.custom = ChunkFields(sup.text, False, cut.duration).to_custom()
    path = tmp_path / "kept.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(path)
    return path


def espnet_run(teacher_dir, data, out, steps, extra=()):
    from k2d.espnet import asr_kd

    command = ["--output_dir", str(out), "--model_conf", f"teacher={teacher_dir}", "--frontend_conf",
               "window_seconds=10", "--window_seconds", "10", "--timestamp_prob", "1.0", "--prompt_prob", "0.0",
               "--batch_type", "unsorted", "--batch_size", "4", "--max_epoch", str(steps), "--num_iters_per_epoch",
               "1", "--optim", "adamw", "--optim_conf", "lr=0.001", "--optim_conf", "weight_decay=0.0",
               "--grad_clip", "1.0", "--ngpu", "0", "--num_workers", "0", "--seed", "0", *extra]
    for name in ("train", "valid"):
        command += [f"--{name}_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
                    f"--{name}_data_path_and_name_and_type", f"{data}/text_ts,text,text",
                    f"--{name}_shape_file", f"{data}/speech_shape"]
    asr_kd.main(command)
    # ESPnet's reporter keeps numpy scalars: allow just those in the weights-only loader
    import datetime

    with torch.serialization.safe_globals([np._core.multiarray.scalar, np.dtype, np.dtypes.Float64DType,
                                           np.dtypes.Float32DType, np.dtypes.Int64DType, datetime.timedelta]):
        state = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=True)
    return [state["reporter"]["stats"][epoch]["train"]["loss"] for epoch in range(1, steps + 1)]


def test_the_task_builds_from_yaml(teacher_dir, tmp_path):
    config = tmp_path / "espnet_kd.yaml"
    config.write_text(yaml.safe_dump({"model": "whisper_kd", "model_conf": {"teacher": str(teacher_dir),
                                                                              "decoder_layers": [0, -1], "gamma": 1.0},
                                      "frontend": "whisper_logmel", "frontend_conf": {"window_seconds": 10}}))
    args = ASRKDTask.get_parser().parse_args(["--config", str(config), "--output_dir", str(tmp_path / "o")])
    model = ASRKDTask.build_model(args)
    assert isinstance(model, ESPnetWhisperKD) and model.student.config.decoder_layers == 2
    assert not any(k.startswith("teacher") for k in model.state_dict())  # checkpoints hold the student only
    assert model.teacher is not None and model.share_encoder


def test_espnet_training_matches_k2d_training_and_converts_to_hugging_face(teacher_dir, chunk_cuts, tmp_path,
                                                                           monkeypatch):
    data = tmp_path / "data"
    assert write_data_dir(CutSet.from_file(chunk_cuts), data, dump_audio=True) == 4
    assert check_data_dir(data) == []
    espnet_losses = espnet_run(teacher_dir, data, tmp_path / "espnet", steps=3)
    assert espnet_losses[-1] < espnet_losses[0]

    # k2d's trainer on the same single batch of the same 4 chunks, same optimiser and clipping
    from k2d.train import trainer as trainer_module

    losses = []
    real = trainer_module.Trainer._micro_step

    def recording(self, batch, sync):
        stats = real(self, batch, sync)
        losses.append(float(stats["loss"]))
        return stats

    monkeypatch.setattr(trainer_module.Trainer, "_micro_step", recording)
    assert distill.main(["--teacher", str(teacher_dir), "--train-cuts", str(chunk_cuts), "--out-dir",
                         str(tmp_path / "k2d"), "--max-steps", "3", "--warmup-steps", "0", "--learning-rate", "0.001",
                         "--timestamp-prob", "1.0", "--prompt-prob", "0.0", "--max-duration", "100",
                         "--num-buckets", "1", "--valid-percent", "0", "--num-workers", "0", "--device", "cpu",
                         "--cache-teacher", "false"]) == 0
    assert losses == pytest.approx(espnet_losses, rel=2e-3)

    from k2d.espnet.to_hf import espnet_to_hf
    from k2d.inference.backends import load_recognizer
    from k2d.inference.settings import GenerationSettings
    from k2d.inference.transcribe import decode_windows

    hf = espnet_to_hf(tmp_path / "espnet" / "config.yaml", tmp_path / "espnet" / "latest.pth", tmp_path / "hf")
    audio = (0.05 * np.random.default_rng(0).standard_normal(16000 * 2)).astype("float32")
    [result] = decode_windows(load_recognizer(hf), [audio], GenerationSettings(max_new_tokens=5))
    assert result.tokens  # it decodes


def test_stage_5_with_the_espnet_trainer(teacher_dir, chunk_cuts, tmp_path):
    args = ["--teacher", str(teacher_dir), "--train-cuts", str(chunk_cuts), "--out-dir", str(tmp_path / "s"),
            "--trainer", "espnet", "--max-steps", "2", "--valid-every", "1", "--valid-percent", "50",
            "--max-duration", "8", "--num-workers", "0", "--device", "cpu", "--warmup-steps", "1"]
    assert distill.main(args) == 0
    summary = yaml.safe_load((tmp_path / "s" / "summary.yaml").read_text())
    assert summary["trainer"] == "espnet" and (tmp_path / "s" / "best" / "model.safetensors").exists()
    assert argparse  # the CLI path is the one run.sh takes
