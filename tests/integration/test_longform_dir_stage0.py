"""./run.sh --recipe longform_dir stage 0 on a directory with wav, flac, mp3 and a corrupt file; and stage 0
of a recipe whose public test corpus is not there."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import yaml
from lhotse import RecordingSet


def conf_with_test_sets(repo_root, tmp_path, test_sets):
    conf = tmp_path / "conf"
    shutil.copytree(repo_root / "egs" / "longform_dir" / "conf", conf)
    recipe = yaml.safe_load((conf / "recipe.yaml").read_text())
    (conf / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "test_sets": test_sets}))
    return conf


@pytest.mark.slow
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
         "--work-dir", str(work), "--conf-dir", str(conf_with_test_sets(repo_root, tmp_path, []))],
        cwd=repo_root, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "broken.wav" in result.stderr
    manifests = work / "data" / "longform_dir" / "manifests"
    recordings = RecordingSet.from_file(manifests / "longform_dir_recordings_unlabelled.jsonl.gz")
    durations = {r.id: round(r.duration, 1) for r in recordings}
    assert durations == {"lecture1": 3.0, "day2__meeting": 2.0, "podcast": 5.0}
    assert "broken.wav" in (manifests / "skipped_unlabelled.tsv").read_text()


@pytest.mark.slow  # stage 0 through run.sh, about 35 s each
@pytest.mark.parametrize("corpus, hint", [("ascend", "CAiRE/ASCEND"), ("cszs", "ky552/cszs_zh_en"),
                                          ("ntuml2021", "ky552/ML2021_ASR_ST"), ("cv16_zhtw", "gated")])
def test_missing_test_corpus_says_how_to_get_it(repo_root, tmp_path, corpus, hint):
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "a.wav", np.zeros(16000, dtype="float32"), 16000)
    conf = conf_with_test_sets(repo_root, tmp_path, [f"{corpus}:test_long"])
    result = subprocess.run(
        ["./run.sh", "--recipe", "longform_dir", "--stage", "0", "--stop-stage", "0", "--work-dir", str(tmp_path),
         "--corpus-dir", str(audio), "--conf-dir", str(conf)], cwd=repo_root, capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert hint in result.stderr and "download" in result.stderr.lower()
    assert (tmp_path / "data" / "longform_dir" / "manifests").is_dir()  # the recipe's own corpus was prepared


@pytest.mark.slow
def test_relative_paths_are_the_callers(repo_root, tmp_path):
    # issue 29 case 15: a relative --corpus-dir was resolved from the repository root
    (tmp_path / "my_audio").mkdir()
    sf.write(tmp_path / "my_audio" / "talk.wav", np.zeros(16000 * 2, dtype="float32"), 16000)
    conf = conf_with_test_sets(repo_root, tmp_path, [])
    result = subprocess.run(
        [str(repo_root / "run.sh"), "--recipe", "longform_dir", "--corpus-dir", "my_audio", "--work-dir", "work",
         "--conf-dir", conf.name, "--stage", "0", "--stop-stage", "0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    manifests = tmp_path / "work" / "data" / "longform_dir" / "manifests"
    assert [r.id for r in RecordingSet.from_file(manifests / "longform_dir_recordings_unlabelled.jsonl.gz")] == ["talk"]
