"""egs/mini_cs_whisper/gpu.sh at toy size on CPU (--tiny true): the script a GPU session runs, end to end with
Whisper base (installed by ./install.sh), so that the device minutes are not spent finding a typo."""

import subprocess

import pytest
import yaml

pytestmark = pytest.mark.slow


def test_gpu_script_runs_the_whole_recipe_at_tiny_size(repo_root, tmp_path):
    work = tmp_path / "work"
    result = subprocess.run(["egs/mini_cs_whisper/gpu.sh", "--work-dir", str(work), "--device", "cpu", "--nj", "1",
                             "--tiny", "true"], cwd=repo_root, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    # the overlay changed what it says, and kept the rest of the recipe's configs
    distill = yaml.safe_load((work / "conf" / "distill.yaml").read_text())
    assert (distill["max_steps"], distill["max_duration"], distill["whole_window"]) == (2, 20, True)
    # every part ran and was timed: synthesis, the teacher's adaptation, K2D stages 1-7
    parts = [line.split()[0] for line in (work / "gpu_times.txt").read_text().splitlines()]
    assert parts == ["synthesis", "teacher_adaptation"] + [f"k2d_stage_{n}" for n in range(1, 8)]
    exp = work / "exp" / "mini_cs_whisper"
    for student in ("student_none", "student_composite"):
        summary = yaml.safe_load((exp / student / "summary.yaml").read_text())
        assert summary["steps"] == 2 and "long-form" in summary["validation"]  # chosen on dev_ood, long-form
        assert len((exp / student / "validation.jsonl").read_text().splitlines()) == 2
    results = (exp / "RESULTS.md").read_text()
    assert "student_composite" in results and "learning_curves.png" in results and "Made by k2d commit" in results
    assert (exp / "learning_curves.png").is_file()
