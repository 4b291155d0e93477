"""Typed stage configurations: dataclass defaults < YAML file < command line.

Each stage declares a dataclass whose fields carry their help text; `add_config_arguments` turns the fields
into `--hyphenated-options`, and `resolve_config` merges the three sources, rejecting unknown YAML keys and
values of the wrong type with a message naming the file and key.

    @dataclass
    class FilterConfig:
        metric: str = option("composite", "distance used to filter: none, ngram, mer, per, composite")
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or option that cannot be used; the message says which and why."""


def option(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,  # noqa: A002
           positive: bool = False, unbounded: bool = False) -> Any:
    """A dataclass field with help text and, for numbers, its allowed range (checked wherever a config is
    built from a file or the command line): [minimum, maximum], or > 0 with `positive`; `unbounded` says a
    number may take any value (a seed, a log-probability). Mutable defaults (lists, dicts) are copied."""
    metadata = {"help": help, "minimum": minimum, "maximum": maximum, "positive": positive, "unbounded": unbounded}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check_range(value: Any, metadata: dict, where: str) -> None:
    """Raise ConfigError when a number is outside the range its option declares."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    low, high = metadata.get("minimum"), metadata.get("maximum")
    if metadata.get("positive") and value <= 0:
        raise ConfigError(f"{where}: {value} must be greater than 0")
    if low is not None and value < low:
        raise ConfigError(f"{where}: {value} is below the smallest allowed value, {low}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: {value} is above the largest allowed value, {high}")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed) for annotations like `int | None`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), True
    return annotation, False


def _convert(value: Any, annotation: Any, where: str) -> Any:
    base, optional = _base_type(annotation)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required")
    origin = typing.get_origin(base)
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError
        if base in (int, float, str):
            if base is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            if base in (int, float) and isinstance(value, bool):
                raise ValueError
            converted = base(value)
            if base is float and not math.isfinite(converted):  # NaN passes every comparison: refuse it here
                raise ConfigError(f"{where}: {value!r} is not a finite number")
            return converted
        if origin in (list, tuple):
            (item_type, *_) = typing.get_args(base) or (Any,)
            items = value.split(",") if isinstance(value, str) else list(value)
            converted = [
                _convert(v.strip() if isinstance(v, str) else v, item_type, where) for v in items if v != ""
            ]
            return converted if origin is list else tuple(converted)
        if origin is dict or base is dict:
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a valid {getattr(base, '__name__', base)}") from None
    return value


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add `--config FILE` and one `--field-name VALUE` option per dataclass field."""
    parser.add_argument("--config", type=Path, help="YAML file with defaults for the options below")
    types_ = _field_types(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore
        base, _ = _base_type(types_[f.name])
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None,
            metavar=getattr(base, "__name__", "VALUE").upper(),
            help=f"{f.metadata.get('help', '')} (default: {shown})",
        )


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping safely; a missing, unparsable or non-mapping file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value, not {type(data).__name__}")
    return data


def _converted_values(cls: type, values: dict[str, Any], source: str) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    types_ = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    converted = {k: _convert(v, types_[k], f"{source}: option {k}") for k, v in values.items()}
    for key, value in converted.items():
        check_range(value, fields[key].metadata, f"{source}: option {key}")
    return converted


def build_config(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """Instantiate `cls` from a mapping, converting types; unknown keys are errors naming `source`."""
    return cls(**_converted_values(cls, values, source))


def resolve_config(cls: type[T], args: argparse.Namespace, ignore: tuple[str, ...] = ()) -> T:
    """Merge dataclass defaults, the YAML file given by --config, and command-line options. Keys in
    `ignore` may appear in the file for another reader (e.g. prepare.yaml's `preparer`)."""
    values: dict[str, Any] = {}
    config_path = getattr(args, "config", None)
    if config_path is not None:
        from_file = {k.replace("-", "_"): v for k, v in load_yaml(config_path).items() if k not in ignore}
        values.update(_converted_values(cls, from_file, f"config {config_path}"))
    names = (f.name for f in dataclasses.fields(cls))
    from_cli = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    values.update(_converted_values(cls, from_cli, "command line"))
    return cls(**values)


def save_config(config: Any, path: Path) -> None:
    """Write the resolved configuration next to a stage's outputs, so every result says how it was made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dataclasses.asdict(config)
    data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # a rerun (or another shard) leaves it be
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)


def parse_stage_args(parser: argparse.ArgumentParser, config_class: type[T], argv: list[str] | None,
                     ignore: tuple[str, ...] = ()):
    """Parse the command line and resolve the stage's config; an unusable config exits with status 2 and
    a message naming the file or option (argparse's convention for usage errors)."""
    args = parser.parse_args(argv)
    try:
        return args, resolve_config(config_class, args, ignore)
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


def overlay(source: Path, target: Path, settings: list[str]) -> None:
    """Copy the config directory SOURCE to TARGET with `FILE.KEY=VALUE` settings applied (VALUE is YAML);
    a recipe variant (a bigger run on a GPU, a tiny test run) without a second copy of every config."""
    source, target = Path(source), Path(target)
    files = {p.name: load_yaml(p) for p in sorted(source.glob("*.yaml"))}
    for setting in settings:
        name, sep, value = setting.partition("=")
        file, dot, key = name.partition(".")
        if not sep or not dot or f"{file}.yaml" not in files:
            raise ConfigError(f"{setting!r} is not FILE.KEY=VALUE for a FILE.yaml of {source}")
        files[f"{file}.yaml"][key] = yaml.safe_load(value)
    target.mkdir(parents=True, exist_ok=True)
    for name, values in files.items():
        text = f"# {source / name} with {' '.join(settings) or 'no changes'}\n"
        (target / name).write_text(text + yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="python -m k2d.config SOURCE_DIR TARGET_DIR [FILE.KEY=VALUE ...]: "
                                     "copy a recipe's conf/ with some values changed")
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("settings", nargs="*", help="e.g. distill.max_steps=3000 (VALUE is read as YAML)")
    args = parser.parse_args(argv)
    try:
        overlay(args.source, args.target, args.settings)
    except ConfigError as error:
        parser.exit(2, f"error: {error}\n")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
