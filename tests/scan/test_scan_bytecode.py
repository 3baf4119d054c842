"""The gate's byte-code check (scan/bytecode.py): a bundle's own pycs are kept only when
they hold the code compiled from the source beside them."""

from __future__ import annotations

import importlib.machinery
import py_compile
import shutil
import sys
from pathlib import Path

from donjon.bundle import build_bundle, unpack
from donjon.scan.bytecode import drop_unverified_bytecode

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
#: Code with nested code objects of every kind, constants and a coding line.
_RICH = """# -*- coding: latin-1 -*-
import functools


class Shape:
    sides: int = 0

    @functools.cache
    def area(self, k=(1, 2.5, None, b"x", frozenset({3}))):
        return [lambda: {i: f"{i!r:>3}" for i in range(k[0])}, (yield from ())]


async def handler(event, context):
    async with context as c:
        return {x async for x in c if x} or "caf\xe9"
"""


def _pycs(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.pyc"))


def test_pycs_of_a_donjon_deploy_build_are_kept(tmp_path: Path) -> None:
    """Every pyc `donjon deploy` compiles is the source's: none is removed (the sandbox
    keeps importing byte-code, not compiling)."""
    src = tmp_path / "src"
    shutil.copytree(EXAMPLES / "hello", src)
    (src / "pkg").mkdir()
    (src / "pkg" / "__init__.py").write_text("from .shapes import Shape\n")
    (src / "pkg" / "shapes.py").write_bytes(_RICH.encode("latin-1"))
    _, archive = build_bundle(src)
    tree = tmp_path / "tree"
    tree.mkdir()
    unpack(archive, tree)
    before = _pycs(tree)
    assert f"pkg/__pycache__/shapes.{sys.implementation.cache_tag}.pyc" in before
    assert drop_unverified_bytecode(tree) == 0
    assert _pycs(tree) == before


def test_altered_sourceless_and_foreign_pycs_are_removed(tmp_path: Path) -> None:
    """A pyc of other code, one with no source, one of another interpreter and one that is
    not byte-code are removed; the verified one and those under .deps/ stay."""
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / ".deps" / "lib" / "__pycache__").mkdir(parents=True)
    (tmp_path / "main.py").write_text("X = 1\n")
    (tmp_path / "other.py").write_text("X = 2\n")
    tag = sys.implementation.cache_tag

    def compiled(source: Path, target: Path, dfile: str) -> None:
        py_compile.compile(
            str(source),
            str(target),
            dfile,
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )

    compiled(tmp_path / "main.py", tmp_path / "__pycache__" / f"main.{tag}.pyc", "/fn/main.py")
    compiled(tmp_path / "main.py", tmp_path / "__pycache__" / f"other.{tag}.pyc", "/fn/other.py")
    compiled(tmp_path / "main.py", tmp_path / "gone.pyc", "/fn/gone.py")
    compiled(tmp_path / "main.py", tmp_path / "__pycache__" / "main.cpython-30.pyc", "/fn/main.py")
    (tmp_path / "__pycache__" / f"main.{tag}.opt-1.pyc").write_bytes(b"not byte-code")
    vendored = tmp_path / ".deps" / "lib" / "__pycache__" / f"x.{tag}.pyc"
    vendored.write_bytes(b"left as it is")
    assert drop_unverified_bytecode(tmp_path) == 4
    assert _pycs(tmp_path) == [f".deps/lib/__pycache__/x.{tag}.pyc", f"__pycache__/main.{tag}.pyc"]


def test_native_modules_shadowing_a_source_are_removed(tmp_path: Path) -> None:
    """A native module named as a source beside it (every extension suffix, a package's
    `__init__`) is removed; one with no source of its name, and those under .deps/, stay."""
    pkg = tmp_path / "pkg"
    (tmp_path / ".deps").mkdir()
    pkg.mkdir()
    for name in ("impl.py", "pkg/__init__.py", ".deps/lib.py"):
        (tmp_path / name).write_text("X = 1\n")
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    shadows = [f"impl{s}" for s in suffixes] + [f"pkg/__init__{suffixes[0]}"]
    kept = [f"fast{suffixes[0]}", f"impl.extra{suffixes[0]}", f".deps/lib{suffixes[0]}"]
    for name in shadows + kept:
        (tmp_path / name).write_bytes(b"\x7fELF")
    assert drop_unverified_bytecode(tmp_path) == len(shadows)
    assert all(not (tmp_path / name).exists() for name in shadows)
    assert all((tmp_path / name).exists() for name in kept)
