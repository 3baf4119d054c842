"""Which standard-library modules a bundle imports, so the supervisor can load them first.

The supervisor runs no function code, but the standard library is trusted
code from the read-only runtime: importing the modules a function will need
there, once, means each worker (which imports the function itself) finds them
already loaded, instead of paying for them on every call.
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

__all__ = ["stdlib_imports"]

_MAX_FILES = 3000
_MAX_BYTES = 2 * 1024 * 1024
#: Standard-library modules with side effects at import, or no use in a sandbox.
_NEVER = frozenset(
    {
        "antigravity",
        "this",
        "__main__",
        "idlelib",
        "tkinter",
        "turtle",
        "turtledemo",
        "pydoc",
        "ensurepip",
        "venv",
        "lib2to3",
    }
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
    top = sys.stdlib_module_names
    return tuple(
        sorted(n for n in found if n.split(".")[0] in top and n.split(".")[0] not in _NEVER)
    )
