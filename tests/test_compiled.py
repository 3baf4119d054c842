"""Which hot-path modules run compiled is read from the install, as Python imports them."""

from __future__ import annotations

import importlib
import importlib.machinery
import subprocess
import sys
from pathlib import Path

from donjon.compiled import COMPILED, compiled_modules, describe_compiled

SETUP = Path(__file__).resolve().parent.parent / "setup.py"


def test_the_report_matches_what_python_imports() -> None:
    """Each module is reported compiled exactly when Python imported an extension for it."""
    compiled, interpreted = compiled_modules()
    assert sorted(compiled + interpreted) == sorted(COMPILED)
    for name in COMPILED:
        origin = importlib.import_module(name).__file__ or ""
        is_extension = origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
        assert (name in compiled) == is_extension, (name, origin)


def test_an_extension_beside_its_source_counts_as_compiled(tmp_path: Path) -> None:
    """In a tree with one module's extension beside its source, that one alone is compiled."""
    for name in COMPILED:
        path = tmp_path.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    first = tmp_path.joinpath(*COMPILED[0].split("."))
    first.with_name(first.name + importlib.machinery.EXTENSION_SUFFIXES[0]).write_bytes(b"")
    compiled, interpreted = compiled_modules(tmp_path)
    assert compiled == [COMPILED[0]]
    assert interpreted == list(COMPILED[1:])


def test_doctor_names_the_state_in_force() -> None:
    """The doctor's line says compiled, interpreted or mixed as the install is."""
    compiled, interpreted = compiled_modules()
    line = describe_compiled()
    if not interpreted:
        assert line.startswith("compiled (mypyc)")
    elif not compiled:
        assert line.startswith("interpreted")
    else:
        assert line.startswith("mixed") and all(name in line for name in interpreted)


def test_setup_reads_the_same_list() -> None:
    """setup.py compiles the very modules `COMPILED` names (it parses them, not a copy)."""
    probe = (
        "import runpy, sys, setuptools; setuptools.setup = lambda **kw: None; "
        f"ns = runpy.run_path({str(SETUP)!r}); print(' '.join(ns['_modules']()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"DONJON_MYPYC": "0", "PATH": "/usr/bin:/bin"},
    )
    assert done.stdout.split() == list(COMPILED)
