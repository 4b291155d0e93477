"""utils/parse_options.sh and run.sh's option handling and stage selection."""

import subprocess
from pathlib import Path

import pytest


def bash(script: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script, "test", *args], cwd=cwd, capture_output=True, text=True)


PARSE = ('stage=0\nstop_stage=7\nforce=false\nname=x\nhelp_message="usage: test"\n'
         '. utils/parse_options.sh\necho "$stage $stop_stage $force $name $*"')


def test_values_flags_and_dashes(repo_root):
    out = bash(PARSE, "--stage", "3", "--stop-stage=5", "--force", "--name", "a b", "rest", cwd=repo_root)
    assert out.returncode == 0 and out.stdout.strip() == "3 5 true a b rest"
    out = bash(PARSE, "--force", "false", cwd=repo_root)
    assert out.stdout.strip() == "0 7 false x"


def test_unknown_option_missing_value_and_bad_boolean(repo_root):
    for args, message in ((["--bogus", "1"], "unknown option --bogus"), (["--stage"], "needs a value"),
                          (["--force=maybe"], "takes true or false")):
        out = bash(PARSE, *args, cwd=repo_root)
        assert out.returncode == 1 and message in out.stderr and "usage: test" in out.stderr


def test_help(repo_root):
    out = bash(PARSE, "--help", cwd=repo_root)
    assert out.returncode == 0 and out.stdout.strip() == "usage: test"


def run_sh(repo_root, *args):
    return subprocess.run(["./run.sh", *args], cwd=repo_root, capture_output=True, text=True)


def test_run_sh_help_lists_every_stage(repo_root):
    out = run_sh(repo_root, "--help")
    assert out.returncode == 0
    names = ["prepare", "pseudo-label", "chunk", "validate", "filter", "distill", "decode", "report"]
    for stage, name in enumerate(names):
        assert f"  {stage} {name}" in out.stdout


def test_run_sh_rejects_bad_input(repo_root):
    for args, message in ((["--bogus"], "unknown option"), (["--stage", "x"], "non-negative integer"),
                          (["--stage", "5", "--stop-stage", "2"], "after --stop-stage"),
                          (["--stop-stage", "9"], "0-7"), (["--recipe", "nope"], "unknown recipe"),
                          (["--device", "tpu"], "--device"), (["extra"], "unexpected argument")):
        out = run_sh(repo_root, *args)
        assert out.returncode != 0 and message in out.stderr, (args, out.stderr)


def test_only_declared_options_are_accepted(repo_root):
    # PATH and HOME exist in every shell, help_message is not an option, and _private is not lower-case API
    for option in ("--PATH", "--home", "--help-message", "--HOME"):
        out = bash(PARSE, option, "/nonexistent", cwd=repo_root)
        assert out.returncode == 1 and f"unknown option {option}" in out.stderr, option
    out = subprocess.run(["./run.sh", "--PATH", "/nonexistent"], cwd=repo_root, capture_output=True, text=True)
    assert out.returncode == 1 and "unknown option --PATH" in out.stderr and "command not found" not in out.stderr


RECIPE_DRIVERS = sorted(str(p.relative_to(Path(__file__).parents[2])) for p in
                        (Path(__file__).parents[2] / "egs").glob("*/run.sh"))


@pytest.mark.parametrize("driver", RECIPE_DRIVERS)
def test_every_recipe_run_sh_takes_both_stage_bounds_alike(repo_root, driver):
    assert len(RECIPE_DRIVERS) >= 5  # mini_cs, longform_dir, mini_cs_whisper, mini_cs_mtkd, mini_cs_streaming
    bad = subprocess.run([driver, "--stage", "3", "--stop-stage", "1"], cwd=repo_root, capture_output=True, text=True)
    assert bad.returncode == 1 and "--stage 3 is after --stop-stage 1" in bad.stderr
    usage = subprocess.run([driver, "--help"], cwd=repo_root, capture_output=True, text=True)
    assert usage.returncode == 0 and "--stop-stage" in usage.stdout
