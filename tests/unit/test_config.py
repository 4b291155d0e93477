"""Typed configs: defaults < YAML < command line, with clear errors."""

import argparse
import dataclasses
from dataclasses import dataclass

import pytest

from k2d.config import ConfigError, add_config_arguments, option, resolve_config


@dataclass
class Example:
    steps: int = option(10, "steps")
    rate: float = option(0.5, "rate")
    name: str = option("a", "name")
    flag: bool = option(False, "flag")
    layers: list[int] = option([0, -1], "layers")


def parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Example)
    return resolve_config(Example, parser.parse_args(argv))


def test_defaults():
    assert parse([]) == Example(10, 0.5, "a", False, [0, -1])


def test_yaml_then_command_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("steps: 20\nrate: 0.25\nflag: true\nlayers: [1, 2, 3]\n")
    assert parse(["--config", str(config)]) == Example(20, 0.25, "a", True, [1, 2, 3])
    assert parse(["--config", str(config), "--steps", "30", "--layers", "4,5", "--flag", "false"]) == Example(
        30, 0.25, "a", False, [4, 5]
    )


def test_unknown_yaml_key_names_file_and_key(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("stepz: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*stepz"):
        parse(["--config", str(config)])


@pytest.mark.parametrize("text", ["steps: 2.5\n", "flag: maybe\n", "rate: fast\n", "- 1\n- 2\n", "steps: [\n"])
def test_bad_values_are_errors(tmp_path, text):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError):
        parse(["--config", str(config)])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        parse(["--config", str(tmp_path / "nope.yaml")])


def test_bad_command_line_value():
    with pytest.raises(ConfigError, match="command line"):
        parse(["--steps", "many"])


def stage_config_classes():
    from k2d.bootstrap import BootstrapConfig
    from k2d.chunking import ChunkConfig
    from k2d.decode import DecodeConfig
    from k2d.distill import DistillConfig
    from k2d.filtering import FilterConfig
    from k2d.layout import RecipeConfig
    from k2d.pseudo_label import PseudoLabelConfig
    from k2d.recipes import known_preparers, load_preparer
    from k2d.report import ReportConfig
    from k2d.validate import ValidateConfig

    preparers = [load_preparer(name).config_class for name in known_preparers()]
    return [DistillConfig, ChunkConfig, DecodeConfig, FilterConfig, RecipeConfig, PseudoLabelConfig, BootstrapConfig,
            ReportConfig, ValidateConfig, *preparers]


@pytest.mark.parametrize("config_class", stage_config_classes(), ids=lambda c: c.__name__)
def test_every_number_option_declares_its_range(config_class):
    import typing

    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        hint = hints[field.name]
        if typing.get_origin(hint) is not list:  # int, float, or one of them | None
            hint = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        if hint in (int, float):
            meta = field.metadata
            declared = meta.get("unbounded") or meta.get("positive") or meta.get("minimum") is not None
            assert declared, f"{config_class.__name__}.{field.name} has no range (option(..., minimum=...))"


@pytest.mark.parametrize("option, value", [("batch_size", "0"), ("batch_size", "-3"), ("max_new_tokens", "0"),
                                           ("no_speech_threshold", "1.5"), ("silence_rms", "-1")])
def test_out_of_range_numbers_are_refused_with_the_option_named(option, value, capsys):
    from k2d import pseudo_label

    with pytest.raises(SystemExit) as exit_info:
        pseudo_label.main(["--recordings", "r.jsonl.gz", "--model", "m", "--output", "o.jsonl.gz",
                           f"--{option.replace('_', '-')}", value])
    assert exit_info.value.code == 2
    assert f"option {option}: {value}" in capsys.readouterr().err


@pytest.mark.parametrize("module, argv, option", [
    ("k2d.filtering", ["--cuts", "c", "--output-pattern", "k_{metric}", "--report-dir", "r", "--alpha", "-0.5"],
     "alpha"),
    ("k2d.distill", ["--teacher", "t", "--train-cuts", "c", "--out-dir", "o", "--max-steps", "-5"], "max_steps"),
    ("k2d.validate", ["--cuts", "c", "--model", "m", "--output", "o", "--batch-size", "0"], "batch_size"),
])
def test_stages_refuse_bad_numbers_before_doing_anything(module, argv, option, capsys, tmp_path, monkeypatch):
    import importlib

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(argv)
    assert exit_info.value.code == 2 and f"option {option}" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written
