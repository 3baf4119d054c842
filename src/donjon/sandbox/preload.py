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
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

__all__ = ["stdlib_imports"]

_MAX_FILES = 3000
_MAX_BYTES = 2 * 1024 * 1024
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


def _names(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


@functools.lru_cache(maxsize=256)
def stdlib_imports(bundle: Path) -> tuple[str, ...]:
    """Dotted names of standard-library modules imported anywhere in `bundle`."""
    found: set[str] = set()
    for count, path in enumerate(sorted(bundle.rglob("*.py"))):
        if count >= _MAX_FILES:
            break
        try:
            if path.stat().st_size > _MAX_BYTES:
                continue
            found |= _names(ast.parse(path.read_bytes()))
        except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
            continue  # a file Python cannot parse is not imported by anything either
    return tuple(sorted(n for n in found if _safe(n)))
