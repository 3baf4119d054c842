"""Donjon's build: pyproject.toml, plus the hot-path modules compiled by mypyc on request.

With DONJON_MYPYC=1, the modules named in src/donjon/compiled.py (`COMPILED`) are
compiled to C extensions by mypyc, when the build has a C compiler, Python's headers and
mypy at hand (as `scripts/setup.sh` builds: `pip install --no-build-isolation` in the
venv, whose mypy also sees Donjon's dependencies' types). By default (DONJON_MYPYC unset
or 0), or without one of them, the same modules install as plain Python, which behaves
the same; the build says why on stderr, and `donjon doctor` says which is in force.
Opt-in, not the default: docs/performance.md, "The gateway's controls compiled".
"""

from __future__ import annotations

import ast
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent


def _modules() -> list[str]:
    """`COMPILED` from src/donjon/compiled.py, read without importing Donjon."""
    tree = ast.parse((HERE / "src" / "donjon" / "compiled.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "COMPILED":
            return list(ast.literal_eval(node.value))
    raise SystemExit("setup.py: src/donjon/compiled.py names no COMPILED")


def _why_interpreted() -> str:
    """Why the modules cannot be compiled here, or "" when they can."""
    if os.environ.get("DONJON_MYPYC", "0") != "1":
        return "DONJON_MYPYC is not 1 (the default)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "Python's headers are missing (Debian: python3-dev)"
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    if shutil.which(compiler.split()[0]) is None:
        return f"no C compiler ({compiler.split()[0]}; Debian: gcc)"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypy (mypyc) is not installed where this build runs"
    return ""


def _extensions() -> list[Extension]:
    why = _why_interpreted()
    if why:
        print(f"donjon: the hot-path modules stay interpreted: {why}", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    paths = [str(Path("src", *name.split("."))) + ".py" for name in _modules()]
    return mypycify(paths, opt_level="3")


setup(ext_modules=_extensions())
