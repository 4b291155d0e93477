"""Every stage CLI answers --help, and rejects bad options with a usage error."""

import importlib

import pytest

MODULES = [
    "k2d.prepare", "k2d.pseudo_label", "k2d.chunking", "k2d.validate", "k2d.filtering", "k2d.distill",
    "k2d.decode", "k2d.score", "k2d.report", "k2d.bench", "k2d.recipes.mini_cs.bootstrap", "k2d.espnet.data_dir",
    "k2d.export", "k2d.import_ct2", "k2d.cache_teacher", "k2d.layout", "k2d.models.packaged", "k2d.check_config",
    "k2d.espnet.to_hf", "k2d.calibrate", "k2d.launch", "k2d.embed", "k2d.codebooks", "k2d.espnet.embed_data_dir",
    "k2d.espnet.tokens", "k2d.espnet.decode_asr", "k2d.espnet.encoder_kd", "k2d.recipes.mini_cs.mtkd",
    "k2d.stream", "k2d.espnet.streaming_kd", "k2d.recipes.mini_cs.streaming",
]


@pytest.mark.parametrize("name", MODULES)
def test_help(name, capsys):
    module = importlib.import_module(name)
    argv = ["--preparer", "mini_cs", "--help"] if name == "k2d.prepare" else ["--help"]
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv)
    assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


@pytest.mark.parametrize("name", ["k2d.pseudo_label", "k2d.chunking", "k2d.filtering", "k2d.decode"])
def test_unknown_option(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(name).main(["--no-such-option"])
    assert exit_info.value.code == 2


def test_bad_config_value_is_exit_2(tmp_path):
    from k2d import filtering

    config = tmp_path / "filter.yaml"
    config.write_text("alpha: high\n")
    with pytest.raises(SystemExit) as exit_info:
        filtering.main(["--cuts", "x", "--output-pattern", "{metric}", "--report-dir", str(tmp_path),
                        "--config", str(config)])
    assert exit_info.value.code == 2


def test_missing_input_is_exit_1(tmp_path):
    from k2d import chunking

    code = chunking.main(["--recordings", str(tmp_path / "none.jsonl.gz"), "--segments", str(tmp_path / "s.jsonl.gz"),
                          "--output", str(tmp_path / "out.jsonl.gz")])
    assert code == 1
