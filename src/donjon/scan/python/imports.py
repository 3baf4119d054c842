"""Resolving names in a module to what they import: ``sp.run`` -> ``subprocess.run``."""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterator

__all__ = ["LOCAL", "ImportMap", "statements"]

#: Prefix of names a module defines itself (a local ``def eval`` is not the builtin).
LOCAL = "<local>."
_BUILTINS = frozenset(dir(builtins))


def statements(tree: ast.AST) -> Iterator[ast.stmt]:
    """Every statement in `tree`, nested ones included (function, class, if, try, with, match
    bodies), without visiting expressions: where imports can be, at a fraction of the nodes
    `ast.walk` visits (speed only)."""
    for _, value in ast.iter_fields(tree):
        if not isinstance(value, list):
            continue
        for item in value:
            if isinstance(item, ast.stmt):
                yield item
                yield from statements(item)
            elif isinstance(item, ast.excepthandler | ast.match_case):
                yield from statements(item)


class ImportMap:
    """Every import of a module (anywhere in it), and the names it defines at top level."""

    def __init__(self, tree: ast.Module) -> None:
        self.aliases: dict[str, str] = {}
        self.defined: set[str] = set()
        for node in statements(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        top = a.name.split(".")[0]
                        self.aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    if a.name != "*":
                        self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.defined.add(stmt.name)
        self.modules = frozenset(v.split(".")[0] for v in self.aliases.values())

    def qualname(self, node: ast.expr) -> str | None:
        """The dotted name `node` refers to, resolved through imports; None if not a name."""
        if isinstance(node, ast.Name):
            name = node.id
            if name in self.aliases:
                return self.aliases[name]
            if name in self.defined or name not in _BUILTINS:
                return LOCAL + name
            return name
        if isinstance(node, ast.Attribute):
            base = self.qualname(node.value)
            return None if base is None else f"{base}.{node.attr}"
        return None

    def imports(self, module: str) -> bool:
        """Whether the module imports `module` (or something inside it)."""
        return module in self.modules or any(
            v == module or v.startswith(module + ".") for v in self.aliases.values()
        )
