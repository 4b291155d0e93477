"""Typed configs: defaults < YAML < command line, with clear errors."""

import argparse
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
