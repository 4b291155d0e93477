"""egs/mini_cs_mtkd (seed 002) at a tiny size: teacher embeddings -> 2 pre-training steps (ESPnet's trainer,
k2d's encoder KD task) -> 2 fine-tuning steps of ESPnet's ASR task (a transducer) with the pre-trained encoder
frozen, then 2 of every parameter -> decoding and scoring, for a baseline (two seeds), one teacher and two
teachers with extra audio."""

import shutil
import subprocess

import pytest
import torch
import yaml

from k2d.layout import EspnetLayout
from tests.helpers import tiny_corpus

pytestmark = pytest.mark.slow

TINY_STUDENT = {"encoder_conf": {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 1}}
FEW_STEPS = {"max_epoch": 1, "num_iters_per_epoch": 2, "batch_bins": 200000, "scheduler_conf": {"warmup_steps": 2}}


def test_mini_cs_mtkd_tiny(repo_root, tmp_path):
    work, conf = tiny_corpus(repo_root, tmp_path), tmp_path / "conf"
    shutil.copytree(repo_root / "egs" / "mini_cs_mtkd" / "conf", conf)
    (conf / "data.yaml").write_text(yaml.safe_dump({"labelled_utterances": 4, "valid_utterances": 2,
                                                    "extra_recordings": 1, "extra_window": 10.0}))
    (conf / "teachers.txt").write_text("teacher=egs/mini_cs/models/teacher:2\n"
                                       "validator=egs/mini_cs/models/validator:3\n")
    (conf / "systems.txt").write_text("none=none:-\nnone_seed1=none:-:1  # a second seed\none=teacher:labelled\n"
                                      "two_extra=teacher,validator:labelled+extra\n")
    student = yaml.safe_load((conf / "student.yaml").read_text())
    student["encoder_conf"].update(TINY_STUDENT["encoder_conf"])
    (conf / "student.yaml").write_text(yaml.safe_dump(student))
    for name in ("pretrain.yaml", "finetune.yaml"):
        stage = {**yaml.safe_load((conf / name).read_text()), **FEW_STEPS}
        (conf / name).write_text(yaml.safe_dump(stage))
    run = subprocess.run(["egs/mini_cs_mtkd/run.sh", "--conf-dir", str(conf), "--work-dir", str(work), "--stage", "1",
                          "--device", "cpu"], cwd=repo_root, capture_output=True, text=True, timeout=3000)
    assert run.returncode == 0, run.stderr[-5000:]
    exp, data = work / "exp" / "mini_cs_mtkd", work / "data" / "mini_cs_mtkd"

    targets = yaml.safe_load((data / "espnet" / "emb_labelled" / "targets.yaml").read_text())
    assert targets == {"teacher_l2": {"dim": 192, "frame_rate": 50.0, "layer": 2,
                                      "teacher": "egs/mini_cs/models/teacher"},
                       "validator_l3": {"dim": 64, "frame_rate": 50.0, "layer": 3,
                                        "teacher": "egs/mini_cs/models/validator"}}
    labelled = (data / "espnet" / "emb_labelled" / "wav.scp").read_text().splitlines()
    more = (data / "espnet" / "emb_labelled+extra" / "wav.scp").read_text().splitlines()
    assert len(labelled) == 4 and len(more) > 4  # plus windows of the extra audio
    # pre-training: the one-teacher run learns one target, the other two, on more audio
    one = yaml.safe_load((exp / "pretrain_one" / "config.yaml").read_text())
    two = yaml.safe_load((exp / "pretrain_two_extra" / "config.yaml").read_text())
    assert set(one["model_conf"]["targets"]) == {"teacher_l2"}
    assert set(two["model_conf"]["targets"]) == {"teacher_l2", "validator_l3"}
    assert any("emb_labelled+extra" in entry[0] for entry in two["train_data_path_and_name_and_type"])
    assert not (exp / "pretrain_none").exists()
    # fine-tuning, phase 1: from the pre-trained encoder, frozen (the baseline from scratch, nothing frozen)
    pretrained = torch.load(exp / "pretrain_one" / "valid.loss.best.pth", weights_only=True)
    assert f"Loading pretrained params from {exp / 'pretrain_one' / 'valid.loss.best.pth'}:encoder:encoder" in (
        exp / "asr_one_phase1" / "train.log").read_text()
    assert "Loading pretrained params" not in (exp / "asr_none_phase1" / "train.log").read_text()
    assert yaml.safe_load((exp / "asr_one_phase1" / "config.yaml").read_text())["freeze_param"] == ["encoder"]
    assert not yaml.safe_load((exp / "asr_none_phase1" / "config.yaml").read_text())["freeze_param"]
    phase1 = torch.load(exp / "asr_one_phase1" / "valid.loss.best.pth", weights_only=True)
    weights = [key for key in pretrained if key.startswith("encoder.") and "running_" not in key
               and "num_batches_tracked" not in key]  # batch-norm statistics are buffers: they still move
    assert weights and all(torch.equal(phase1[key], pretrained[key]) for key in weights)
    # phase 2: every parameter, from phase 1's best model, at a tenth of the rate
    for system in ("none", "one"):
        assert f"Loading pretrained params from {exp / f'asr_{system}_phase1' / 'valid.loss.best.pth'}\n" in (
            exp / f"asr_{system}" / "train.log").read_text()
        config = yaml.safe_load((exp / f"asr_{system}" / "config.yaml").read_text())
        assert config["optim_conf"]["lr"] == 0.0002 and not config["freeze_param"]
    # the students are transducers trained on the RNN-T loss (torchaudio's, through ESPnet's own model)
    finetuned = yaml.safe_load((exp / "asr_none" / "config.yaml").read_text())
    assert finetuned["decoder"] == "transducer" and "joint_net_conf" in finetuned
    assert "loss_transducer=" in (exp / "asr_none" / "train.log").read_text()
    for system in ("none", "one", "two_extra"):
        for test_set in ("test_in_short", "test_ood_short"):
            scores = yaml.safe_load((exp / f"asr_{system}" / f"decode_{test_set}" / "scores.yaml").read_text())
            assert scores["utterances"] > 0 and scores["mer"]["reference_length"] > 0
    results = (exp / "RESULTS.md").read_text()
    assert all(f"| {system} |" in results for system in ("none", "none_seed1", "one", "two_extra"))
    assert yaml.safe_load((exp / "asr_none_seed1" / "config.yaml").read_text())["seed"] == 1
    assert "Spread (max - min MER) of the 2 seeds of none" in results
    assert (exp / "learning_curves.png").stat().st_size > 0
    assert "| none, phase 1 | 1 | 1 |" in results and "| none, phase 2 | 1 | 1 |" in results

    # a decode is redone when what it decoded changed (here another checkpoint), and skipped when not
    decode = exp / "asr_none" / "decode_test_in_short"
    layout = dict(EspnetLayout("mini_cs_mtkd", work).shell())
    command = ["python", "-m", "k2d.espnet.decode_asr", "--asr-config", str(exp / "asr_none" / "config.yaml"),
               "--asr-model", str(exp / "asr_one" / "valid.loss.best.pth"), "--device", "cpu",
               "--recordings", layout["recordings:test_in"], "--supervisions", layout["supervisions:test_in"],
               "--out-dir", str(decode)]
    again = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "model changed since" in again.stderr, again.stderr[-3000:]
    unchanged = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert unchanged.returncode == 0 and "skipping decoding" in unchanged.stderr, unchanged.stderr[-3000:]
