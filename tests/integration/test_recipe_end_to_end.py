"""The mini_cs recipe end to end (stages 0-7) at its smallest size with the shipped demo models, run twice:
the second run must change nothing. Also the demo-model bootstrap for two steps."""

import subprocess

import pytest
import yaml

from k2d import bootstrap
from tests.helpers import write_tiny_conf


def run(repo_root, conf, work):
    return subprocess.run(
        ["./run.sh", "--conf-dir", str(conf), "--work-dir", str(work), "--device", "cpu", "--nj", "2"],
        cwd=repo_root, capture_output=True, text=True, timeout=1200,
    )


@pytest.mark.slow
def test_mini_cs_end_to_end_twice(repo_root, tmp_path):
    conf, work = tmp_path / "conf", tmp_path / "work"
    write_tiny_conf(repo_root, conf)
    first = run(repo_root, conf, work)
    assert first.returncode == 0, first.stderr[-5000:]
    exp = work / "exp" / "mini_cs"
    results = (exp / "RESULTS.md").read_text()
    for row in ("| teacher |", "| validator |", "| student_none |", "| student_composite |"):
        assert row in results
    for model in ("teacher", "validator", "student_none", "student_composite"):
        for test_set in ("test_in", "test_ood"):
            scores = yaml.safe_load((exp / model / f"decode_{test_set}" / "scores.yaml").read_text())
            assert scores["utterances"] == 1 and scores["mer"]["reference_length"] > 0
    data = work / "data" / "mini_cs"
    labelling = yaml.safe_load((data / "pseudo" / "mini_cs_supervisions_train_unlabelled-pl_report.yaml").read_text())
    assert labelling["labelled"] == 2 and labelling["segments"] > 0  # the demo teacher labelled both recordings
    assert labelling["zero_length_segments"] == 0 and labelling["out_of_order_segments"] == 0
    report = yaml.safe_load((data / "filter_report" / "report.yaml").read_text())
    assert report["metrics"]["none"]["chunks_in"] > 0
    assert set(report["metrics"]) == {"none", "ngram", "mer", "per", "composite", "confidence", "two_validators"}
    assert (exp / "mer_vs_speed.png").stat().st_size > 1000
    assert (exp / "export" / "model.safetensors").exists()
    assert (exp / "export_ct2" / "model.bin").exists()  # CTranslate2, int8 by default

    outputs = sorted(p for p in (work / "data").rglob("*") if p.is_file() and ".progress" not in p.parts)
    outputs += sorted(p for p in exp.rglob("*") if p.is_file() and "log" not in p.relative_to(exp).parts)
    before = {p: p.stat().st_mtime_ns for p in outputs}
    second = run(repo_root, conf, work)
    assert second.returncode == 0, second.stderr[-5000:]
    assert {p: p.stat().st_mtime_ns for p in outputs} == before  # nothing redone
    for stage in ("stage 0 outputs exist", "skipping stage 1", "skipping stage 2", "skipping stage 3",
                  "skipping teacher cache", "skipping stage 4", "already trained", "skipping stage 7"):
        assert stage in second.stderr, stage
    assert "decoded and scored" in (exp / "log" / "decode" / "task-0.log").read_text()  # decode jobs log there


@pytest.mark.slow
def test_bootstrap_two_steps(repo_root, tmp_path):
    conf, work = tmp_path / "conf", tmp_path / "work"
    write_tiny_conf(repo_root, conf)
    stage0 = subprocess.run(["./run.sh", "--conf-dir", str(conf), "--work-dir", str(work), "--stop-stage", "0"],
                            cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert stage0.returncode == 0, stage0.stderr
    data = work / "data" / "mini_cs"
    code = bootstrap.main([
        "--data-dir", str(data), "--tokenizer-dir", str(tmp_path / "tok"), "--out-dir", str(tmp_path / "model"),
        "--export-dir", str(tmp_path / "export"), "--device", "cpu", "--d-model", "32", "--encoder-layers", "1",
        "--decoder-layers", "2", "--ffn-dim", "64", "--batch-size", "2", "--windows-per-epoch", "4",
        "--max-steps", "2", "--valid-every", "2", "--num-workers", "0", "--vocab-size", "300",
        "--valid-utterances", "1", "--warmup-steps", "1",
    ])
    assert code == 0
    assert (tmp_path / "export" / "model.safetensors").exists()
    assert (tmp_path / "tok" / "tokenizer.json").exists()
