"""Which standard-library modules a bundle imports, so the supervisor can load them first.

The supervisor runs no function code, but the standard library is trusted
code from the read-only runtime: importing the modules a function will need
there, once, means each worker (which imports the function itself) finds them
already loaded, instead of paying for them on every call.

Trusted is not harmless: some standard-library modules act when imported
(``unittest.__main__`` runs ``unittest.main()`` and exits, ``antigravity``
opens a browser). A bundle merely naming a module must not make the
supervisor run it, so only an allow-list of plain library modules is
preloaded (`SAFE_TOP_LEVEL`), never a ``__main__`` or test submodule; and the
supervisor survives whatever an import raises (runtime/supervisor.py).

The bundle is read in the gateway's process, at every sandbox start of a version
it has not read yet, so reading it must cost little whatever it holds. Its import
lines are found by a pattern over each line, not by compiling the module: compiling
holds the GIL for as long as it runs, and a 2 MiB module that is one tuple of a
million names took CPython 6 s and 1.4 GB (vendored modules under ``.deps`` are not
read by the deploy scan, so nothing refused them first): the node's event loop
stood still that long (tests/security/test_attack_preload.py). A line the pattern
misreads (``import`` at the start of a line in a string) can only add a module of
the allow-list, which is safe to import by construction; an import it misses is
only imported by the worker instead.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

__all__ = ["stdlib_imports"]

_MAX_FILES = 3000
_MAX_BYTES = 2 * 1024 * 1024
#: Bytes read in all, the function's own modules first, then its vendored ones (`.deps`);
#: what is left past it is imported by the workers alone.
_MAX_TOTAL_BYTES = 16 * 1024 * 1024
#: ``import a.b, c as d`` or ``from a.b import c`` at the start of a line, after
#: indentation: the names after ``import`` (up to what no name holds), or the module after
#: ``from``. No two neighbouring parts take the same characters but the spaces, so the
#: search is linear in the module's length.
_IMPORT_LINE = re.compile(
    rb"^[ \t]*(?:import[ \t]+([\w. \t,]+)|from[ \t]+([\w.]+)[ \t]+import\b)", re.MULTILINE
)
#: The only top-level standard-library modules the supervisor may import: ones
#: with no side effect at import beyond defining names (no output, no exit, no
#: browser, no thread, no change to sys.path), that functions commonly use.
#: Deny by default: any other module (``this``, ``antigravity``, ``site``,
#: ``unittest``, ``idlelib``, ``turtle``, ``pydoc``, ...) is left to the worker,
#: which imports the function's code anyway.
SAFE_TOP_LEVEL = frozenset(
    {
        "__future__", "abc", "argparse", "array", "ast", "asyncio", "base64", "binascii",
        "bisect", "bz2", "calendar", "cmath", "codecs", "collections", "colorsys",
        "concurrent", "contextlib", "contextvars", "copy", "copyreg", "csv", "ctypes",
        "dataclasses", "datetime", "decimal", "difflib", "email", "encodings", "enum",
        "errno", "fnmatch", "fractions", "functools", "glob", "graphlib", "gzip",
        "hashlib", "heapq", "hmac", "html", "http", "importlib", "inspect", "io",
        "ipaddress", "itertools", "json", "keyword", "linecache", "locale", "logging",
        "lzma", "math", "mimetypes", "numbers", "operator", "os", "pathlib", "pickle",
        "platform", "posixpath", "pprint", "queue", "quopri", "random", "re", "reprlib",
        "secrets", "select", "selectors", "shlex", "shutil", "signal", "socket", "sqlite3",
        "ssl", "stat", "statistics", "string", "stringprep", "struct", "subprocess", "sys",
        "tarfile", "tempfile", "textwrap", "threading", "time", "token", "tokenize",
        "traceback", "types", "typing", "unicodedata", "urllib", "uuid", "warnings",
        "weakref", "xml", "zipfile", "zlib", "zoneinfo",
    }
)  # fmt: skip
#: Submodule names never imported, whatever their package: a ``__main__`` runs
#: the package as a program (``unittest.__main__`` calls ``unittest.main()``),
#: test packages run or set up tests.
_NEVER_PART = frozenset({"__main__", "test", "tests", "idle_test"})


def _safe(name: str) -> bool:
    parts = name.split(".")
    return (
        parts[0] in SAFE_TOP_LEVEL
        and parts[0] in sys.stdlib_module_names
        and not any(part in _NEVER_PART for part in parts)
    )


def _names(source: bytes) -> set[str]:
    """The absolute module names `source`'s import lines name (see `_IMPORT_LINE`)."""
    found: set[str] = set()
    for match in _IMPORT_LINE.finditer(source):
        imported, module = match.groups()
        if module is not None:
            if not module.startswith(b"."):  # a relative import names no top-level module
                found.add(module.decode("ascii", "replace"))
            continue
        for item in imported.split(b","):
            words = item.split()
            if words:  # `os.path as p`: the module is the first word
                found.add(words[0].decode("ascii", "replace"))
    return found


def _vendored(bundle: Path, path: Path) -> bool:
    return path.relative_to(bundle).parts[0] == ".deps"


@functools.lru_cache(maxsize=256)
def stdlib_imports(bundle: Path) -> tuple[str, ...]:
    """Dotted names of standard-library modules imported anywhere in `bundle`."""
    found: set[str] = set()
    budget = _MAX_TOTAL_BYTES
    own_first = sorted(bundle.rglob("*.py"), key=lambda p: (_vendored(bundle, p), p))
    for count, path in enumerate(own_first):
        if count >= _MAX_FILES:
            break
        try:
            size = path.stat().st_size
            if size > _MAX_BYTES or size > budget:
                continue
            budget -= size
            found |= _names(path.read_bytes())
        except OSError:
            continue  # unreadable: the worker's import will say so, not this list
    return tuple(sorted(n for n in found if _safe(n)))
