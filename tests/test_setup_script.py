"""scripts/setup.sh repairs a .venv that an interrupted run left half made."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

SETUP = Path(__file__).parent.parent / "scripts" / "setup.sh"


def _project(root: Path) -> Path:
    """A tiny project beside a copy of setup.sh: the script installs it, not Donjon."""
    (root / "scripts").mkdir(parents=True)
    shutil.copy(SETUP, root / "scripts" / "setup.sh")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "setup-probe"\nversion = "0"\n'
        "[project.optional-dependencies]\ndev = []\n"
        '[tool.setuptools]\npy-modules = ["setup_probe"]\n'
    )
    (root / "setup_probe.py").write_text("ANSWER = 42\n")
    return root


def _no_pip(venv: Path) -> None:
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)


def _no_config(venv: Path) -> None:
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    (venv / "pyvenv.cfg").unlink()


def _gone_interpreter(venv: Path) -> None:
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to("/nonexistent/python3")


@pytest.mark.slow
@pytest.mark.parametrize(
    "break_venv", [_no_pip, _no_config, _gone_interpreter], ids=["no-pip", "no-cfg", "no-python"]
)
def test_a_half_made_venv_is_made_again(tmp_path: Path, break_venv: Callable[[Path], None]) -> None:
    """Whatever an interrupted set-up left in .venv, the next run ends with a working one."""
    root = _project(tmp_path / "project")
    break_venv(root / ".venv")
    done = subprocess.run(
        ["/bin/bash", str(root / "scripts" / "setup.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "making it again" in done.stderr
    assert _answer(root, "import pip") == "42"


def _answer(root: Path, first: str = "") -> str:
    """What the venv's Python prints of setup_probe.ANSWER ("" if it cannot import it),
    after running `first`."""
    done = subprocess.run(
        [
            str(root / ".venv" / "bin" / "python"),
            "-c",
            f"{first}\nimport setup_probe; print(setup_probe.ANSWER)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.stdout.strip()


@pytest.mark.slow
def test_the_package_is_installed_again_only_when_its_source_changed(tmp_path: Path) -> None:
    """A run with the source as it was installed leaves the install alone; a change to it,
    or the package removed, is installed by the next run (never a stale package)."""
    root = _project(tmp_path / "project")
    setup = ["/bin/bash", str(root / "scripts" / "setup.sh")]
    subprocess.run(setup, capture_output=True, timeout=600, check=True)
    assert _answer(root) == "42"
    installed = next((root / ".venv").rglob("site-packages/setup_probe.py"))
    before = installed.stat().st_mtime_ns
    subprocess.run(setup, capture_output=True, timeout=600, check=True)
    assert installed.stat().st_mtime_ns == before  # not installed again
    (root / "setup_probe.py").write_text("ANSWER = 43\n")
    subprocess.run(setup, capture_output=True, timeout=600, check=True)
    assert _answer(root) == "43"
    # Removed from the venv by hand, the source unchanged: installed again.
    pip = [str(root / ".venv" / "bin" / "python"), "-m", "pip", "uninstall", "-y", "-q"]
    subprocess.run([*pip, "setup-probe"], capture_output=True, timeout=120, check=True)
    assert _answer(root) == ""
    subprocess.run(setup, capture_output=True, timeout=600, check=True)
    assert _answer(root) == "43"
