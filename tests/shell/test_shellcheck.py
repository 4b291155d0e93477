"""Every shell script passes shellcheck (installed by install.sh)."""

import shutil
import subprocess


def test_shell_scripts_are_shellcheck_clean(repo_root):
    assert shutil.which("shellcheck"), "shellcheck is not installed: run ./install.sh"
    scripts = ["run.sh", "path.sh", "install.sh", "tests/run.sh", ".ci/run"]
    scripts += [str(p.relative_to(repo_root)) for pattern in ("utils/*.sh", "local/*.sh", "egs/*/*.sh")
                for p in sorted(repo_root.glob(pattern))]
    result = subprocess.run(["shellcheck", "-S", "warning", "-x", *scripts], cwd=repo_root, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout
