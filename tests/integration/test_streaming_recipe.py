"""egs/mini_cs_streaming (seed 003) at a tiny size: a full-context teacher and two streaming transducer students
(alone; auxiliary branches + APC) for a few steps of ESPnet's trainer, exported and decoded chunk by chunk, and
exported to sherpa-onnx and decoded there."""

import shutil
import subprocess

import pytest
import torch
import yaml

from tests.helpers import tiny_corpus

pytestmark = pytest.mark.slow


def test_mini_cs_streaming_tiny(repo_root, tmp_path):
    work, conf = tiny_corpus(repo_root, tmp_path), tmp_path / "conf"
    shutil.copytree(repo_root / "egs" / "mini_cs_streaming" / "conf", conf)
    (conf / "data.yaml").write_text(yaml.safe_dump({"labelled_utterances": 6, "valid_utterances": 2,
                                                    "extra_recordings": 0}))
    (conf / "systems.txt").write_text("alone=none:0\nbranch_apc=branch:2,kd_weight=0.5\n")
    train = yaml.safe_load((conf / "train.yaml").read_text())
    train["streaming_encoder_conf"].update(output_size=32, linear_units=64, num_blocks=2)
    train["model_conf"]["kd_layers"] = [1, 2]
    train.update(max_epoch=1, num_iters_per_epoch=2, batch_bins=200000, scheduler_conf={"warmup_steps": 2})
    (conf / "train.yaml").write_text(yaml.safe_dump(train))
    run = subprocess.run(["egs/mini_cs_streaming/run.sh", "--conf-dir", str(conf), "--work-dir", str(work),
                          "--stage", "1", "--device", "cpu", "--decode-chunks-ms", "320"],
                         cwd=repo_root, capture_output=True, text=True, timeout=3000)
    assert run.returncode == 0, run.stderr[-5000:]
    exp = work / "exp" / "mini_cs_streaming"

    teacher = yaml.safe_load((exp / "asr_teacher" / "config.yaml").read_text())
    student = yaml.safe_load((exp / "asr_branch_apc" / "config.yaml").read_text())
    assert teacher["streaming_encoder_conf"]["chunk_size"] == 0 and teacher["teacher_model"] is None
    assert student["streaming_encoder_conf"]["chunk_size"] == 8
    assert student["model_conf"]["kd"] == "branch" and student["model_conf"]["apc_shift"] == 2
    assert student["model_conf"]["kd_weight"] == 0.5  # the student's own model_conf from systems.txt
    assert student["teacher_model"].endswith("asr_teacher/valid.loss_asr.best.pth")
    # a student without KD or APC trains without the teacher (which it would otherwise run on every batch)
    assert yaml.safe_load((exp / "asr_alone" / "config.yaml").read_text())["teacher_model"] is None
    trained = torch.load(exp / "asr_branch_apc" / "valid.loss_asr.best.pth", weights_only=True)
    exported = torch.load(exp / "asr_branch_apc" / "export" / "model.pth", weights_only=True)
    assert any(k.startswith("branches.") for k in trained) and any(k.startswith("teacher.") for k in trained)
    assert not any(k.startswith(("branches.", "teacher.", "apc_heads.")) for k in exported)
    # every model is a transducer, which the export keeps
    assert student["model_conf"]["head"] == "transducer" and any(k.startswith("transducer.") for k in exported)
    assert "loss_transducer=" in (exp / "asr_alone" / "train.log").read_text()
    for system, decoding in [("teacher", "full"), ("alone", "320ms"), ("branch_apc", "320ms"),
                             ("branch_apc", "320ms_beam4")]:
        for test_set in ("dev", "test_in", "test_ood"):  # dev: what the choices are made on
            out = exp / f"asr_{system}" / f"decode_{test_set}_{decoding}"
            hyps = (out / "hyp.txt").read_text().splitlines()
            assert len(hyps) == len((out / "ref.txt").read_text().splitlines()) > 0  # every utterance decoded
            assert "mer" in yaml.safe_load((out / "scores.yaml").read_text())
            latency = yaml.safe_load((out / "latency.yaml").read_text())
            assert latency["utterances"] == len(hyps) and latency["chunks"] >= len(hyps)
    # every student is exported to sherpa-onnx, its CTC head and its stateless transducer, and decoded there
    assert student["model_conf"]["prediction"] == "stateless"
    for system in ("alone", "branch_apc"):
        assert (exp / f"asr_{system}" / "export_sherpa" / "model.int8.onnx").stat().st_size > 0
        assert (exp / f"asr_{system}" / "export_sherpa_rnnt" / "encoder.int8.onnx").stat().st_size > 0
        for test_set in ("test_in", "test_ood"):
            for suffix in ("ctc", "sherpa", "sherpa_int8", "max1", "sherpa_rnnt", "sherpa_rnnt_int8"):
                out = exp / f"asr_{system}" / f"decode_{test_set}_{suffix}"
                assert len((out / "hyp.txt").read_text().splitlines()) == len(
                    (out / "ref.txt").read_text().splitlines()) > 0
    results = (exp / "RESULTS.md").read_text()
    assert "| alone |" in results and "| branch_apc |" in results and "| teacher |" in results
    assert "test_in_320ms" in results and "first token" in results and "test_in_sherpa_int8" in results
    assert "## Deployment: sherpa-onnx" in results and "| branch_apc | CTC | test_ood |" in results
    assert "| branch_apc | transducer | test_ood |" in results
    assert "modified beam search with 4 hypotheses" in results and "test_ood_320ms_beam4 MER %" in results
    assert (exp / "learning_curves.png").stat().st_size > 0 and "| alone | 1 | 1 |" in results
