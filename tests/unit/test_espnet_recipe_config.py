"""The ESPnet recipes' shared driver inputs: their paths (k2d.layout --espnet) and their config check."""

import shutil
from pathlib import Path

from k2d.check_config import check_espnet_conf
from k2d.layout import EspnetLayout


def test_espnet_layout_names_every_path_after_the_recipe():
    layout = dict(EspnetLayout("mini_cs_streaming", Path("W")).shell())
    assert layout["manifests"] == "W/data/mini_cs/manifests"  # the corpus's own stage 0
    assert layout["cuts:finetune"] == "W/data/mini_cs_streaming/cuts/mini_cs_streaming_cuts_finetune.jsonl.gz"
    assert layout["recordings:test_ood"] == "W/data/mini_cs/manifests/mini_cs_recordings_test_ood.jsonl.gz"
    assert layout["tokens"] == "W/data/mini_cs_streaming/tokens" and layout["test_sets"] == "test_in test_ood"


def test_shipped_espnet_configs_pass_and_broken_ones_are_named(repo_root, tmp_path):
    for recipe in ("mini_cs_mtkd", "mini_cs_streaming"):
        assert check_espnet_conf(repo_root / "egs" / recipe / "conf") == []
    conf = tmp_path / "conf"
    shutil.copytree(repo_root / "egs" / "mini_cs_mtkd" / "conf", conf)
    with open(conf / "systems.txt", "a") as f:
        f.write("more=whisper_base,wav2vec:labelled\n")
    (conf / "data.yaml").write_text("labelled_utterances: 0\n")
    problems = check_espnet_conf(conf)
    assert any("system more names teacher(s) wav2vec" in p for p in problems)
    assert any("labelled_utterances" in p for p in problems)
    (conf / "teachers.txt").write_text("whisper_base whisper-base:6\n")
    assert any("teachers.txt:1: 'whisper_base whisper-base:6' is not NAME=VALUE" in p for p in check_espnet_conf(conf))


def test_a_streaming_students_own_options_must_be_model_conf_options(repo_root, tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(repo_root / "egs" / "mini_cs_streaming" / "conf", conf)
    (conf / "systems.txt").write_text("alone=none:0\nalone_s1=none:0,seed=1\nbranch=branch:0,kd_weight=0.1\n"
                                      "layer=layer:0,kd_weigth=0.1\n")
    assert [p for p in check_espnet_conf(conf) if "systems.txt" in p] == [
        f"{conf / 'systems.txt'}: system layer sets kd_weigth=0.1: not KEY=VALUE of seed or a model_conf option "
        f"in {conf / 'train.yaml'}"]
