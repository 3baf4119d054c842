"""Byte-code in a bundle that is not its scanned source's: removed before it can run.

`donjon deploy` byte-compiles a bundle with unchecked-hash pycs, which Python imports
without reading the source beside them, and a ``mod.pyc`` with no ``mod.py`` imports
too. The scan reads the source; an archive made by hand can ship byte-code compiled from
other code (reproduced in an attack review: a clean ``main.py`` passed the gate and the
``eval`` of event data in its ``__pycache__/main.<tag>.pyc`` ran). So the deploy gate's
scan helper keeps a pyc of the function's own modules only when it holds the code this
interpreter compiles from the source beside it (code objects compared: instructions,
names, constants, nested code); every other one (sourceless, of another interpreter or
optimisation level, altered, unreadable) is removed, and the sandbox compiles that module
from the source the gate read. Vendored ``.deps/`` is left as it is: its code is not
analysed either (docs/scanning.md, "What the gate can and cannot see").

A native extension module named as a scanned one (``impl.cpython-311-x86_64-linux-gnu.so``,
``impl.abi3.so`` or ``impl.so`` beside ``impl.py``, ``__init__.so`` beside a package's
``__init__.py``) shadows it the same way: Python's path finder tries extension suffixes
before ``.py``; and so does a directory ``impl/`` holding a native ``__init__`` beside
``impl.py`` (a package is found before a module). It is removed too, so the module imports
from its scanned source. A native module with no source of its name beside it is imported
by that name from code the gate reads, and stays.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import marshal
import os
import sys
from pathlib import Path

__all__ = ["drop_unverified_bytecode"]

#: Longest first, so ``impl.abi3.so`` is read as module ``impl``, not ``impl.abi3``.
_NATIVE_SUFFIXES = tuple(sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True))

#: Magic number, flags, and the source's hash or mtime and size (PEP 552).
_HEADER_BYTES = 16
#: Where the sandbox mounts the bundle: the file name `donjon deploy` compiles with.
_MOUNT = "/fn"


def drop_unverified_bytecode(root: Path, keep: str = ".deps") -> int:
    """Remove every ``*.pyc`` under `root` (but under `root/keep`) that is not what this
    interpreter compiles from its source, and every native module shadowing a scanned
    source; returns how many files were removed."""
    removed = 0
    stack = [root]
    while stack:
        here = stack.pop()
        with os.scandir(here) as it:
            entries = list(it)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if not (here == root and e.name == keep):
                    stack.append(Path(e.path))
            elif (e.name.endswith(".pyc") and not _verified(root, Path(e.path))) or _shadows(
                e.name, here, root
            ):
                os.unlink(e.path)
                removed += 1
    return removed


def _shadows(name: str, here: Path, root: Path) -> bool:
    """Whether file `name` in `here` is a native module Python would import in place of
    a source module of the same name: beside it, or, as a package's ``__init__``, the
    module named as the package beside its directory (a package is found first)."""
    for suffix in _NATIVE_SUFFIXES:
        if name.endswith(suffix):
            module = name[: -len(suffix)]
            if not module or "." in module:
                return False
            if os.path.lexists(here / f"{module}.py"):
                return True
            return (
                module == "__init__"
                and here != root
                and os.path.lexists(here.parent / f"{here.name}.py")
            )
    return False


def _verified(root: Path, pyc: Path) -> bool:
    """Whether `pyc` holds exactly the code this interpreter compiles from its source."""
    tag = sys.implementation.cache_tag
    stem, dot, rest = pyc.name.partition(".")
    if pyc.parent.name != "__pycache__" or not dot or rest != f"{tag}.pyc":
        return False
    source = pyc.parent.parent / f"{stem}.py"
    if source.is_symlink() or not source.is_file() or pyc.is_symlink():
        return False
    try:
        data = pyc.read_bytes()
        if data[:4] != importlib.util.MAGIC_NUMBER:
            return False
        # Never run, only compared; in the scan process, whose limits bound what a
        # hostile pyc makes the loader do (marshal is not hardened against one).
        code = marshal.loads(data[_HEADER_BYTES:])  # noqa: S302  # nosec B302 - never run
        rel = source.relative_to(root).as_posix()
        expected = compile(source.read_bytes(), f"{_MOUNT}/{rel}", "exec", dont_inherit=True)
    except (OSError, ValueError, EOFError, TypeError, SyntaxError, RecursionError):
        return False
    return bool(code == expected)
