"""The code style pyproject.toml configures (ruff: pycodestyle, pyflakes, isort, bugbear, pyupgrade) holds."""

import subprocess
import sys


def test_ruff_is_clean(repo_root):
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "k2d", "tests"], cwd=repo_root,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
