"""Every stage CLI answers --help, and rejects bad options with a usage error."""

import importlib

import pytest

MODULES = [
    "k2d.prepare", "k2d.pseudo_label", "k2d.chunking", "k2d.validate", "k2d.filtering", "k2d.distill",
    "k2d.decode", "k2d.score", "k2d.report", "k2d.bench.__main__", "k2d.bootstrap",
    "k2d.espnet.data_dir",
    "k2d.export", "k2d.models.import_ct2", "k2d.cache_teacher", "k2d.layout", "k2d.models.packaged", "k2d.check_config",
    "k2d.espnet.to_hf", "k2d.calibrate", "k2d.launch", "k2d.mtkd.embed", "k2d.mtkd.codebooks", "k2d.mtkd.data_dir",
    "k2d.espnet.tokens", "k2d.espnet.decode_asr", "k2d.mtkd.task", "k2d.espnet.recipe",
    "k2d.streaming.stream", "k2d.streaming.task", "k2d.streaming.latency", "k2d.export_onnx", "k2d.streaming.onnx",
    "k2d.streaming.sherpa",
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


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_and_infinite_options_are_refused(tmp_path, value, capsys):
    # issue 29 case 5: NaN passed every range check ("kept 0/6", exit 0)
    from k2d import filtering
    from k2d.config import ConfigError, build_config
    from k2d.filtering import FilterConfig

    with pytest.raises(SystemExit) as exit_info:
        filtering.main(["--cuts", "x", "--output-pattern", "{metric}", "--report-dir", str(tmp_path),
                        f"--alpha={value}"])
    assert exit_info.value.code == 2 and "option alpha" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not a finite number"):
        build_config(FilterConfig, {"alpha": float(value)}, "filter.yaml")  # YAML's .nan / .inf


def test_check_config_refuses_nan_in_a_stage_config(repo_root, tmp_path):
    import shutil

    from k2d import check_config

    conf = tmp_path / "conf"
    shutil.copytree(repo_root / "egs" / "mini_cs" / "conf", conf)
    (conf / "filter.yaml").write_text("alpha: .nan\n")
    assert check_config.main(["--recipe", "mini_cs", "--conf-dir", str(conf)]) != 0
