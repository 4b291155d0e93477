"""Stage 0 of mini_cs through run.sh at a tiny size: manifests, validation, determinism, idempotence."""

import gzip
import json
import shutil
import subprocess

import pytest
import yaml
from lhotse import RecordingSet, SupervisionSet
from lhotse.qa import validate_recordings_and_supervisions

pytestmark = pytest.mark.slow  # each test synthesizes the corpus through run.sh: about a minute

TINY = {
    "seed": 7, "train_labelled_utterances": 6, "dev_utterances": 2, "train_unlabelled_recordings": 2,
    "train_unlabelled_minutes": 0.25, "test_recordings": 1, "test_minutes": 0.25,
}


def tiny_conf(repo_root, tmp_path, **overrides):
    conf = tmp_path / "conf"
    shutil.copytree(repo_root / "egs" / "mini_cs" / "conf", conf)
    (conf / "prepare.yaml").write_text(yaml.safe_dump({**TINY, **overrides}))
    return conf


def run_stage0(repo_root, conf, work):
    return subprocess.run(
        ["./run.sh", "--stage", "0", "--stop-stage", "0", "--conf-dir", str(conf), "--work-dir", str(work),
         "--nj", "2"],
        cwd=repo_root, capture_output=True, text=True, timeout=600,
    )


def test_stage0_twice(repo_root, tmp_path):
    conf, work = tiny_conf(repo_root, tmp_path), tmp_path / "work"
    first = run_stage0(repo_root, conf, work)
    assert first.returncode == 0, first.stderr
    manifests = work / "data" / "mini_cs" / "manifests"
    for split in ("train_labelled", "dev", "test_in", "test_ood"):
        recordings = RecordingSet.from_file(manifests / f"mini_cs_recordings_{split}.jsonl.gz")
        supervisions = SupervisionSet.from_file(manifests / f"mini_cs_supervisions_{split}.jsonl.gz")
        validate_recordings_and_supervisions(recordings, supervisions)
        assert all(r.sampling_rate == 16000 and r.num_channels == 1 for r in recordings)
        assert all(s.text and s.speaker and s.language in ("zh", "en", "zh-en") for s in supervisions)
    assert len(RecordingSet.from_file(manifests / "mini_cs_recordings_train_labelled.jsonl.gz")) == 6
    # the unlabelled split has no supervisions among the manifests; its truth is kept apart
    assert not (manifests / "mini_cs_supervisions_train_unlabelled.jsonl.gz").exists()
    assert (work / "data" / "mini_cs" / "truth" / "mini_cs_supervisions_train_unlabelled.jsonl.gz").exists()
    unlabelled = RecordingSet.from_file(manifests / "mini_cs_recordings_train_unlabelled.jsonl.gz")
    assert all(14.0 <= r.duration < 40.0 for r in unlabelled)  # 0.25 min plus the sentence that crosses it
    stats = yaml.safe_load((work / "data" / "mini_cs" / "corpus_stats.yaml").read_text())
    assert stats["train_unlabelled"]["recordings"] == 2 and 0 < stats["train_unlabelled"]["nonspeech_share"] < 1

    before = {p: p.stat().st_mtime_ns for p in manifests.iterdir()}
    second = run_stage0(repo_root, conf, work)
    assert second.returncode == 0 and "skipping" in second.stderr
    assert {p: p.stat().st_mtime_ns for p in manifests.iterdir()} == before


def test_same_seed_same_corpus(repo_root, tmp_path):
    texts = []
    for name in ("a", "b"):
        conf = tiny_conf(repo_root, tmp_path / name, train_labelled_utterances=3, dev_utterances=1,
                         train_unlabelled_recordings=1, test_recordings=1)
        result = run_stage0(repo_root, conf, tmp_path / name / "work")
        assert result.returncode == 0, result.stderr
        path = tmp_path / name / "work" / "data" / "mini_cs" / "manifests" / "mini_cs_supervisions_test_in.jsonl.gz"
        with gzip.open(path, "rt") as f:
            texts.append([(s["text"], s["start"], s["duration"]) for s in map(json.loads, f)])
    assert texts[0] == texts[1]
