"""A package's names, imported from their modules when first used (PEP 562).

A package that re-exports its modules' names makes whoever imports any of its modules
pay for all of them: the node imported the scanners' rule catalog and the OSV updater
(with httpx) along with the scan package it needs for a few types. A package lists
instead which of its modules holds each name, imports them under TYPE_CHECKING for
mypy, and installs::

    if not TYPE_CHECKING:  # mypy would make every name of a module __getattr__ Any
        __getattr__ = lazy_exports(globals(), {"module": ("Name", ...), ...})

Written here rather than taken from a library (lazy_loader does this): it is these
dozen lines, and a dependency of the node's process is one more package to trust.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: dict[str, Any], modules: Mapping[str, Iterable[str]]
) -> Callable[[str], Any]:
    """A module `__getattr__` for the package whose globals are `namespace`: each name of
    `modules[m]` is the attribute of that name of the package's module `m`, imported on
    first use and then kept in `namespace`, so the next use is a plain attribute."""
    package = str(namespace["__name__"])
    exports = {name: f"{package}.{m}" for m, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = namespace[name] = getattr(importlib.import_module(module), name)
        return value

    return __getattr__
