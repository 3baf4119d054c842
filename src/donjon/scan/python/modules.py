"""The bundle's own Python modules, and what an import names among them.

Module names are resolved as Python would for the deployed bundle, but over the
scanned files only (nothing is imported or executed): an absolute import (``import
helpers``, ``from app import repo``, ``import app.db as db``) is looked up from the
directory holding the importing file's outermost package (the script directory of a
top-level module), then from each manifest's bundle directory that holds the file
(the manifest's ``handler:`` is relative to it), then from each directory above, up
to the scan root; a relative
import (``from .repo import find_user``, ``from ..db import query``) from the
importing file's own package directory. A name that no scanned file provides (the
standard library, an installed distribution) is not the bundle's.
"""

from __future__ import annotations

import ast
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ImportTarget", "ModuleIndex", "bundle_imports"]


@dataclass(frozen=True, slots=True)
class ImportTarget:
    """What a name bound by an import refers to: a dotted path, searched from `base`
    (a directory relative to the scan root) or, when `base` is None, from the
    importing file's search roots (an absolute import)."""

    base: str | None
    dotted: tuple[str, ...]

    def attribute(self, rest: tuple[str, ...]) -> ImportTarget:
        return ImportTarget(self.base, self.dotted + rest)


def _join(base: str, parts: tuple[str, ...]) -> str:
    return "/".join(p for p in (base, *parts) if p)


def _package_dir(rel: str, level: int) -> str | None:
    """The directory a relative import of `level` dots in file `rel` starts from."""
    here = posixpath.dirname(rel)
    for _ in range(level - 1):
        if not here:
            return None  # beyond the top-level package: an ImportError at run time
        here = posixpath.dirname(here)
    return here


def bundle_imports(
    nodes: Iterable[ast.Import | ast.ImportFrom], rel: str
) -> dict[str, ImportTarget]:
    """The names the imports of module `rel` bind, relative imports included."""
    found: dict[str, ImportTarget] = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = tuple(a.name.split("."))
                if a.asname:
                    found[a.asname] = ImportTarget(None, parts)
                else:
                    found[parts[0]] = ImportTarget(None, parts[:1])
        elif isinstance(node, ast.ImportFrom):
            module = tuple(node.module.split(".")) if node.module else ()
            base = _package_dir(rel, node.level) if node.level else None
            if node.level and base is None:
                continue
            for a in node.names:
                if a.name != "*":
                    found[a.asname or a.name] = ImportTarget(base, (*module, a.name))
    return found


class ModuleIndex:
    """Which scanned files are importable modules, and where an import leads."""

    def __init__(self, files: Iterable[str], bundle_dirs: Iterable[str] = ()) -> None:
        self.files = frozenset(files)
        self._packages = frozenset(
            posixpath.dirname(f) for f in self.files if posixpath.basename(f) == "__init__.py"
        )
        self._bundle_dirs = sorted({d for d in bundle_dirs if d}, key=len, reverse=True)
        self._roots: dict[str, tuple[str, ...]] = {}

    def roots(self, rel: str) -> tuple[str, ...]:
        """Where absolute imports of file `rel` are searched, in order."""
        here = posixpath.dirname(rel)
        cached = self._roots.get(here)
        if cached is not None:
            return cached
        top = here
        while top and top in self._packages:
            top = posixpath.dirname(top)
        found = [top]
        found += [d for d in self._bundle_dirs if here == d or here.startswith(d + "/")]
        while top:  # then each enclosing directory (a namespace package's parents)
            top = posixpath.dirname(top)
            found.append(top)
        roots = tuple(dict.fromkeys(found))
        self._roots[here] = roots
        return roots

    def module_file(self, base: str, parts: tuple[str, ...]) -> str | None:
        """The file of module `parts` under directory `base` (a module or a package)."""
        path = _join(base, parts)
        if parts and f"{path}.py" in self.files:
            return f"{path}.py"
        init = f"{path}/__init__.py" if path else "__init__.py"
        return init if init in self.files else None

    def resolve(self, rel: str, target: ImportTarget) -> tuple[str, tuple[str, ...]] | None:
        """The module file `target` (imported in file `rel`) lies in, and the attribute
        path left inside it (``("find_user",)``, ``("Repo", "get")``); None when the
        bundle does not provide it."""
        relative = target.base is not None
        bases = (target.base,) if target.base is not None else self.roots(rel)
        for base in bases:
            if base is None:
                continue
            for n in range(len(target.dotted), -1 if relative else 0, -1):
                found = self.module_file(base, target.dotted[:n])
                if found is not None:
                    return found, target.dotted[n:]
        return None
