"""The tools bench/iac_compare.py measures: Donjon from the project's venv, Checkov and
cfn-lint from a venv of their own (bench/.venv-iac, made here when missing: Checkov pins
many packages, which must not reach the project's venv).

    .venv/bin/python bench/iac_tools.py      # make or check bench/.venv-iac only
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-iac"
#: The versions the mapping file was written against (bench/iac_compare_map.toml).
PINS = ("checkov==3.3.30", "cfn-lint==1.58.0")
#: Checkov asks a vendor's API for guidelines on start unless told not to (no network here).
CHECKOV_FLAGS = ("--skip-download", "--quiet", "-o", "json")
FRAMEWORKS = ("--framework", "cloudformation", "serverless", "terraform")


@dataclass(frozen=True)
class Timed:
    """One command's output and cost: wall seconds and CPU seconds (user + system)."""

    stdout: str
    returncode: int
    wall: float
    cpu: float


def timed(argv: list[str], cwd: Path | None = None, timeout: float = 600.0) -> Timed:
    """Run `argv` to completion (one child at a time, so the CPU delta is its own)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(done.stdout, done.returncode, wall, cpu)


def ensure_venv(venv: Path = VENV) -> Path:
    """bench/.venv-iac with Checkov and cfn-lint, made with pip when missing."""
    if not (venv / "bin" / "checkov").exists() or not (venv / "bin" / "cfn-lint").exists():
        print(f"installing {' '.join(PINS)} into {venv} (a few minutes)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, *PINS], check=True)
    return venv


def donjon() -> str:
    """The `donjon` command beside the Python running this script (the project's venv)."""
    return str(Path(sys.executable).parent / "donjon")


def checkov(venv: Path = VENV) -> str:
    return str(venv / "bin" / "checkov")


def cfn_lint(venv: Path = VENV) -> str:
    return str(venv / "bin" / "cfn-lint")


def version(command: str) -> str:
    """The tool's `--version` line."""
    out = subprocess.run([command, "--version"], capture_output=True, text=True, check=False)
    lines = (out.stdout.strip() or out.stderr.strip()).splitlines()
    return lines[-1] if lines else "?"


if __name__ == "__main__":
    made = ensure_venv()
    print(f"{made}: checkov {version(checkov(made))}, {version(cfn_lint(made))}")
