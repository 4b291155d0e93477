"""A recording that failed in stage 1 because its file was gone, then restored, is labelled and merged on
the next ./run.sh (issue 29 case 1: the shard redid it, then the --merge-only step saw an existing output
and skipped, exit 0, the output without the recording)."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import yaml

pytestmark = pytest.mark.slow


def test_a_restored_recording_is_labelled_and_merged_through_run_sh(repo_root, tmp_path):
    corpus = tmp_path / "recordings"
    corpus.mkdir()
    noise = np.random.default_rng(0)
    for name in ("a", "b"):
        sf.write(corpus / f"{name}.wav", (noise.standard_normal(16000 * 4) * 0.1).astype("float32"), 16000)
    conf = tmp_path / "conf"
    shutil.copytree(repo_root / "egs" / "longform_dir" / "conf", conf)
    recipe = yaml.safe_load((conf / "recipe.yaml").read_text())
    recipe.update(test_sets=[], teacher="egs/mini_cs/models/teacher", validator="egs/mini_cs/models/validator")
    (conf / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    work = tmp_path / "work"

    def run(stage):
        return subprocess.run(["./run.sh", "--recipe", "longform_dir", "--corpus-dir", str(corpus), "--work-dir",
                               str(work), "--conf-dir", str(conf), "--device", "cpu", "--nj", "1", "--stage",
                               str(stage), "--stop-stage", str(stage)], cwd=repo_root, capture_output=True,
                              text=True, timeout=600)

    assert run(0).returncode == 0
    (corpus / "b.wav").rename(tmp_path / "b.wav")  # gone while stage 1 runs
    run(1)
    report = work / "data" / "longform_dir" / "pseudo" / "longform_dir_supervisions_unlabelled-pl_report.yaml"
    assert [s["recording"] for s in yaml.safe_load(report.read_text())["skipped"]] == ["b"]
    (tmp_path / "b.wav").rename(corpus / "b.wav")  # restored
    result = run(1)
    assert result.returncode == 0, result.stderr
    final = yaml.safe_load(report.read_text())
    assert final["skipped"] == [] and final["labelled"] == 2  # b is in the output now
