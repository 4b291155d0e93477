"""Bad input ends in correct work or a clear error naming the file, option or recording (issue F1-F15);
nothing exits 0 having silently done less than asked."""

import gzip
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import yaml
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

from k2d import chunking, decode, prepare, pseudo_label, score
from k2d.recipes.longform_dir import LongformDirConfig, prepare_longform_dir


def test_f1_chinese_file_names_make_distinct_recordings(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("第一课.wav", "第二课.wav", "第三课.wav"):
        sf.write(corpus / name, np.zeros(16000, dtype="float32") + 0.01, 16000)
    prepare_longform_dir(tmp_path / "data", LongformDirConfig(corpus_dir=str(corpus)))
    recordings = RecordingSet.from_file(tmp_path / "data" / "manifests" / "longform_dir_recordings_unlabelled.jsonl.gz")
    assert sorted(recordings.ids) == ["第一课", "第三课", "第二课"]


def test_f5_supervisions_of_unknown_recordings_are_an_error(tmp_path, capsys):
    recordings = tmp_path / "rec.jsonl.gz"
    sf.write(tmp_path / "a.wav", np.zeros(16000, dtype="float32"), 16000)
    RecordingSet.from_recordings([Recording.from_file(tmp_path / "a.wav", recording_id="a")]).to_file(recordings)
    supervisions = tmp_path / "sup.jsonl.gz"
    SupervisionSet.from_segments([SupervisionSegment("s1", "b", 0, 1, text="x"),
                                  SupervisionSegment("s2", "c", 0, 1, text="y")]).to_file(supervisions)
    code = decode.main(["--model", "nowhere", "--set-name", "t", "--recordings", str(recordings), "--supervisions",
                        str(supervisions), "--out-dir", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert "2 supervision(s) name recordings that are not in" in err and "b, c" in err


def test_f6_scoring_refuses_what_cannot_be_scored(tmp_path, capsys):
    ref, hyp = tmp_path / "ref.txt", tmp_path / "hyp.txt"
    ref.write_text("")
    hyp.write_text("u1 a b\n")
    assert score.main(["--ref", str(ref), "--hyp", str(hyp)]) == 1
    assert "holds no utterance" in capsys.readouterr().err
    ref.write_text("u1 a b\nu2 c\n")
    hyp.write_text("x1 a b\n")
    assert score.main(["--ref", str(ref), "--hyp", str(hyp)]) == 1
    assert "no id of the hypotheses" in capsys.readouterr().err
    hyp.write_text("u1 a b\n")
    assert score.main(["--ref", str(ref), "--hyp", str(hyp)]) == 0
    err = capsys.readouterr().err
    assert "1 of 2 reference id(s) have no hypothesis" in err and "(e.g. u2)" in err


def test_f6_score_sh_exits_non_zero(repo_root, tmp_path):
    (tmp_path / "ref.txt").write_text("")
    (tmp_path / "hyp.txt").write_text("u1 a\n")
    result = subprocess.run(["local/score.sh", str(tmp_path / "ref.txt"), str(tmp_path / "hyp.txt")], cwd=repo_root,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "holds no utterance" in result.stderr


def truncated_copy(source, target):
    data = gzip.decompress(source.read_bytes())
    target.write_bytes(gzip.compress(data)[: len(gzip.compress(data)) // 2])


def test_f7_truncated_manifests_are_named(tmp_path, capsys):
    sf.write(tmp_path / "a.wav", np.zeros(16000 * 3, dtype="float32"), 16000)
    good = tmp_path / "good.jsonl.gz"
    RecordingSet.from_recordings([Recording.from_file(tmp_path / "a.wav", recording_id=f"a{i}") for i in range(50)]
                                 ).to_file(good)
    bad = tmp_path / "truncated.jsonl.gz"
    truncated_copy(good, bad)
    assert pseudo_label.main(["--recordings", str(bad), "--model", "m", "--output", str(tmp_path / "o.jsonl.gz")]) == 1
    err = capsys.readouterr().err
    assert f"recordings manifest {bad} is truncated or corrupt" in err and "Traceback" not in err
    segments = tmp_path / "segments.jsonl.gz"
    SupervisionSet.from_segments([SupervisionSegment(f"s{i}", "a0", 0, 1, text="x") for i in range(200)]).to_file(
        segments)
    bad_segments = tmp_path / "bad_segments.jsonl.gz"
    truncated_copy(segments, bad_segments)
    assert chunking.main(["--recordings", str(good), "--segments", str(bad_segments), "--output",
                          str(tmp_path / "c.jsonl.gz")]) == 1
    assert f"supervisions manifest {bad_segments} is truncated or corrupt" in capsys.readouterr().err


def test_f8_non_utf8_text_files_are_named_with_their_line(tmp_path, capsys):
    ref, hyp = tmp_path / "ref.txt", tmp_path / "hyp.txt"
    ref.write_bytes("u1 你好\nu2 世界\n".encode("gbk"))
    hyp.write_text("u1 你好\n", encoding="utf-8")
    assert score.main(["--ref", str(ref), "--hyp", str(hyp)]) == 1
    assert f"{ref}:1 is not UTF-8" in capsys.readouterr().err
    corpus, kaldi = tmp_path / "corpus", tmp_path / "kaldi"
    corpus.mkdir()
    kaldi.mkdir()
    sf.write(corpus / "a.wav", np.zeros(16000, dtype="float32") + 0.01, 16000)
    sf.write(kaldi / "u1.wav", np.zeros(16000, dtype="float32"), 16000)
    (kaldi / "wav.scp").write_text(f"u1 {kaldi / 'u1.wav'}\n")
    (kaldi / "text").write_bytes("u1 模型\n".encode("gbk"))
    config = tmp_path / "prepare.yaml"
    config.write_text(yaml.safe_dump({"corpus_dir": str(corpus), "test_sets": {"t": str(kaldi)}}))
    assert prepare.main(["--preparer", "longform_dir", "--data-dir", str(tmp_path / "d"), "--config",
                         str(config)]) == 1
    assert f"{kaldi / 'text'}:1 is not UTF-8" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_f10_links_fifos_and_directories_are_listed_as_skipped(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sf.write(corpus / "good.wav", np.zeros(16000, dtype="float32") + 0.01, 16000)
    (corpus / "dangling.wav").symlink_to(tmp_path / "nowhere.wav")
    (corpus / "loop.wav").symlink_to(corpus / "loop.wav")
    os.mkfifo(corpus / "pipe.wav")
    (corpus / "folder.wav").mkdir()
    prepare_longform_dir(tmp_path / "data", LongformDirConfig(corpus_dir=str(corpus)))
    skipped = dict(line.split("\t") for line in
                   (tmp_path / "data" / "manifests" / "skipped_unlabelled.tsv").read_text().splitlines())
    assert skipped == {str(corpus / "dangling.wav"): "dangling symbolic link",
                       str(corpus / "loop.wav"): "symbolic link loop",
                       str(corpus / "pipe.wav"): "not a regular file (a FIFO)",
                       str(corpus / "folder.wav"): "a directory, not an audio file"}


def test_f11_prepare_help_lists_the_preparer_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["--preparer", "longform_dir", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--corpus-dir" in out and "--config" in out and "--test-sets" in out


def test_f13_config_that_does_not_fit_the_weights_names_the_tensor(repo_root, tmp_path):
    from k2d.models.whisper import load_whisper

    model = tmp_path / "model"
    shutil.copytree(repo_root / "egs" / "mini_cs" / "models" / "validator", model)
    config = json.loads((model / "config.json").read_text())
    config["encoder_ffn_dim"] = 300
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(RuntimeError, match=r"holds model\.encoder\.layers\.0\.fc1\.\w+ of shape \[256"):
        load_whisper(model)
    (model / "config.json").write_text("{broken")
    result = subprocess.run(["python", "-m", "k2d.export", "--model", str(model), "--out", str(tmp_path / "o")],
                            cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 1 and f"{model / 'config.json'} is not valid JSON" in result.stderr


@pytest.mark.slow
def test_f14_every_stage_config_is_checked_before_stage_0(repo_root, tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(repo_root / "egs" / "mini_cs" / "conf", conf)
    with open(conf / "distill.yaml", "a") as f:
        f.write("learning_rat: 0.1\n")  # a typo in a late stage's config
    result = subprocess.run(["./run.sh", "--conf-dir", str(conf), "--work-dir", str(tmp_path / "w")], cwd=repo_root,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "unknown option(s) learning_rat" in result.stderr
    assert "Stage 0" not in result.stderr and not (tmp_path / "w" / "data").exists()
    result = subprocess.run(["./run.sh", "--metrics", "bogus", "--work-dir", str(tmp_path / "w")], cwd=repo_root,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "unknown metric(s) bogus" in result.stderr and "Stage 0" not in result.stderr


def chunking_inputs(tmp_path, segments):
    """A 40 s recording and teacher segments (id, start, end) of it, as the manifests stage 2 reads."""
    path = tmp_path / "rec.flac"
    sf.write(path, np.zeros(40 * 16000, dtype=np.float32), 16000)
    RecordingSet.from_recordings([Recording.from_file(path, recording_id="rec")]).to_file(tmp_path / "rec.jsonl.gz")
    SupervisionSet.from_segments([SupervisionSegment(i, "rec", start, end - start, text="好")
                                  for i, start, end in segments]).to_file(tmp_path / "seg.jsonl.gz")
    return ["--recordings", str(tmp_path / "rec.jsonl.gz"), "--segments", str(tmp_path / "seg.jsonl.gz"),
            "--output", str(tmp_path / "chunks.jsonl.gz"), "--max-chunk", "10"]


@pytest.mark.parametrize("segments, message", [
    ([("a", 0, 2), ("a", 3, 4)], "id a occurs more than once"),  # issue 29 case 3: two chunks with one id
    ([("a", -3, 2), ("b", 3, 4)], "segment a of recording rec starts at -3"),  # case 4: a chunk at -3.0 s
])
def test_chunking_refuses_duplicate_ids_and_negative_starts(tmp_path, capsys, segments, message):
    assert chunking.main(chunking_inputs(tmp_path, segments)) == 1
    assert message in capsys.readouterr().err and not (tmp_path / "chunks.jsonl.gz").exists()


def test_chunking_refuses_chunks_longer_than_the_teachers_window(repo_root, tmp_path, capsys):
    # issue 29 case 9: max_chunk 30 with the demo's 10 s teacher made 17 s chunks without a word
    args = chunking_inputs(tmp_path, [("a", 0, 2)])
    teacher = str(repo_root / "egs" / "mini_cs" / "models" / "teacher")
    assert chunking.main(args[:-1] + ["30", "--teacher", teacher]) == 1
    assert "longer than the teacher's window (10 s" in capsys.readouterr().err
    assert chunking.main(args + ["--teacher", teacher]) == 0  # 10 s fits


@pytest.mark.parametrize("damage", ["truncated", "empty", "no_config"])
def test_a_corrupt_or_incomplete_model_directory_is_named(repo_root, tmp_path, damage):
    # issue 29 cases 6 and 11: a raw SafetensorError traceback, or a mismatch message naming a missing file
    model = tmp_path / "model"
    shutil.copytree(repo_root / "egs" / "mini_cs" / "models" / "validator", model)
    weights = model / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "empty":
        weights.write_bytes(b"")
    else:
        (model / "config.json").unlink()
    result = subprocess.run(["python", "-m", "k2d.export", "--model", str(model), "--out", str(tmp_path / "o")],
                            cwd=repo_root, capture_output=True, text=True)
    named = model / "config.json" if damage == "no_config" else weights
    assert result.returncode == 1 and str(named) in result.stderr and "Traceback" not in result.stderr
    from k2d.models.whisper import load_whisper  # what every stage loads a model with

    with pytest.raises(RuntimeError, match=str(named)):
        load_whisper(model)


def test_pseudo_labelling_refuses_a_duplicate_recording_id_up_front(repo_root, tmp_path, capsys):
    # issue 29 case 2: decoded everything, then "1 item(s) not done yet", on every rerun, never naming the id
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(16000, dtype=np.float32), 16000)
    recording = Recording.from_file(path, recording_id="same")
    with gzip.open(tmp_path / "rec.jsonl.gz", "wt") as f:
        f.write((json.dumps(recording.to_dict()) + "\n") * 2)
    code = pseudo_label.main(["--recordings", str(tmp_path / "rec.jsonl.gz"), "--model",
                              str(repo_root / "egs" / "mini_cs" / "models" / "teacher"), "--output",
                              str(tmp_path / "pl.jsonl.gz"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and "id same occurs more than once" in err and "decod" not in err.lower()


def test_an_input_truncated_after_the_output_was_made_is_named(tmp_path, capsys):
    # issue 29 case 8: a raw EOFError from the provenance check when the stage's output already existed
    args = chunking_inputs(tmp_path, [("a", 0, 2), ("b", 3, 4)])
    assert chunking.main(args) == 0
    segments = tmp_path / "seg.jsonl.gz"
    truncated_copy(segments, segments)
    capsys.readouterr()
    assert chunking.main(args) == 1
    err = capsys.readouterr().err
    assert f"supervisions manifest {segments} is truncated or corrupt" in err and "Traceback" not in err


def test_score_sh_reads_a_bom_and_refuses_directories_and_punctuation_only_references(repo_root, tmp_path):
    # issue 29 cases 12-14
    def score_sh(ref, hyp):
        return subprocess.run(["local/score.sh", str(ref), str(hyp), str(tmp_path / "out")], cwd=repo_root,
                              capture_output=True, text=True)

    ref, hyp = tmp_path / "ref.txt", tmp_path / "hyp.txt"
    ref.write_text("u1 你 好\nu2 世 界\n", encoding="utf-8")
    hyp.write_bytes("\ufeffu1 你 好\nu2 世 界\n".encode())  # a BOM before the first id: it was a deletion (50%)
    result = score_sh(ref, hyp)
    assert result.returncode == 0 and yaml.safe_load((tmp_path / "out" / "scores.yaml").read_text())["mer"]["rate"] == 0
    result = score_sh(ref, tmp_path)  # a directory: it said "does not exist"
    assert result.returncode == 1 and "is a directory" in result.stderr
    ref.write_text("u1 ，。！\n", encoding="utf-8")  # only punctuation: it said MER 100.00% [2 / 0], exit 0
    result = score_sh(ref, hyp)
    assert result.returncode == 1 and "empty after normalisation" in result.stderr
