"""./run.sh --recipe longform_dir stage 0 on a directory with wav, flac, mp3 and a corrupt file; and every
real recipe's stage 0 without its data."""

import subprocess

import numpy as np
import pytest
import soundfile as sf
from lhotse import RecordingSet


def test_longform_dir_reports_the_corrupt_file(repo_root, tmp_path):
    corpus = tmp_path / "recordings"
    (corpus / "day2").mkdir(parents=True)
    sf.write(corpus / "lecture1.wav", np.zeros(44100 * 3, dtype="float32"), 44100)
    sf.write(corpus / "day2" / "meeting.flac", np.zeros((16000 * 2, 2), dtype="float32"), 16000)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=200:d=5", "-ar", "22050",
                    str(corpus / "podcast.mp3")], check=True)
    (corpus / "broken.wav").write_bytes(b"RIFF\x00\x00 this is not audio")
    work = tmp_path / "work"
    result = subprocess.run(
        ["./run.sh", "--recipe", "longform_dir", "--corpus-dir", str(corpus), "--stage", "0", "--stop-stage", "0",
         "--work-dir", str(work)], cwd=repo_root, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "broken.wav" in result.stderr
    manifests = work / "data" / "longform_dir" / "manifests"
    recordings = RecordingSet.from_file(manifests / "longform_dir_recordings_unlabelled.jsonl.gz")
    durations = {r.id: round(r.duration, 1) for r in recordings}
    assert durations == {"lecture1": 3.0, "day2__meeting": 2.0, "podcast": 5.0}
    assert "broken.wav" in (manifests / "skipped_unlabelled.tsv").read_text()


@pytest.mark.parametrize("recipe, hint", [("ascend", "CAiRE/ASCEND"), ("cszs", "ky552/cszs_zh_en"),
                                          ("ntuml2021", "ky552/ML2021_ASR_ST"), ("cv16_zhtw", "gated")])
def test_real_recipe_without_data_says_how_to_get_it(repo_root, tmp_path, recipe, hint):
    result = subprocess.run(
        ["./run.sh", "--recipe", recipe, "--stage", "0", "--stop-stage", "0", "--work-dir", str(tmp_path),
         "--corpus-dir", str(tmp_path / "nowhere")], cwd=repo_root, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert hint in result.stderr and "download" in result.stderr.lower()
