"""Taint across the modules of one bundle: which function a call reaches in another
module, the work budget all modules share, and which file each step of a path is in.

Each module keeps its own interpreter (its imports, lines, sinks and findings); a call
from one module into a function of another is analysed by the callee's interpreter,
with the caller's labelled arguments, memoised and depth-bounded like a local call
(calls.py; the dispatch is interpreter.py's). Steps of a trace carry the file they
happened in once they cross a module boundary (`relocate`); an empty `Step.path` means
the module being analysed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from donjon.scan.errors import ScanError
from donjon.scan.python.modules import ImportTarget, ModuleIndex
from donjon.scan.python.values import Env, Step, Value

if TYPE_CHECKING:
    from donjon.scan.python.frames import FunctionInfo
    from donjon.scan.python.interpreter import Interpreter

__all__ = ["Bundle", "Work", "relocate"]

#: Re-exports followed from one module to the next (``from .core import run`` in a
#: package's ``__init__``) before a name is given up on.
_MAX_REEXPORTS = 4


@dataclass
class Work:
    """Work done and allowed: expressions evaluated (or parameters bound) and statements
    interpreted. One per module when it is analysed alone; one for a whole bundle, the
    sum of its modules' allowances, when calls cross modules (which module's code runs
    on whose behalf then does not matter: the total stays bounded by the bundle's size)."""

    evaluations: int = 0
    evaluation_limit: int = 0
    statements: int = 0
    statement_limit: int = 0

    def charge(self, work: int, line: int) -> None:
        self.evaluations += work
        if self.evaluations > self.evaluation_limit:
            raise ScanError(
                f"line {line}: the code is too complex to analyse in bounded time",
                hint="split the module or simplify its expressions; the gate does not pass "
                "code it cannot analyse",
            )

    def statement(self, line: int) -> None:
        self.statements += 1
        if self.statements > self.statement_limit:
            raise ScanError(
                f"line {line}: the code is too complex to analyse in bounded time",
                hint="split the module or simplify its control flow; the gate does not pass "
                "code it cannot analyse",
            )


def relocate(value: Value, path: str) -> Value:
    """`value` with each step not yet placed in a file placed in `path` (the module the
    value leaves), whatever labels it carries."""
    changes: dict[str, Any] = {}  # fields named at run time: whatever labels Value has
    for f in fields(value):
        item = getattr(value, f.name)
        if isinstance(item, tuple) and item and isinstance(item[0], Step):
            if any(not s.path for s in item):
                changes[f.name] = tuple(s if s.path else replace(s, path=path) for s in item)
        elif isinstance(item, Value):
            moved = relocate(item, path)
            if moved is not item:
                changes[f.name] = moved
    return replace(value, **changes) if changes else value


def _dotted(node: ast.expr) -> tuple[str, ...] | None:
    if isinstance(node, ast.Name):
        return (node.id,)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else (*base, node.attr)
    return None


class Bundle:
    """The interpreters of a bundle's modules, by file, and the work budget they share."""

    def __init__(self, index: ModuleIndex) -> None:
        self.index = index
        self.modules: dict[str, Interpreter] = {}
        self.work = Work()

    def add(self, interpreter: Interpreter) -> None:
        """Take part in the bundle: its allowance joins the shared budget."""
        self.modules[interpreter.rel] = interpreter
        self.work.evaluation_limit += interpreter.work.evaluation_limit
        self.work.statement_limit += interpreter.work.statement_limit
        interpreter.work = self.work

    def resolve(
        self, caller: Interpreter, func: ast.expr, env: Env
    ) -> tuple[Interpreter, FunctionInfo] | None:
        """The function of another module of the bundle that `func` (called in `caller`)
        names through an import: ``helpers.run(x)``, ``find_user(x)``, ``repo.Repo.get``."""
        path = _dotted(func)
        if path is None or env.get(path[0]) is not None:  # a local variable, not the import
            return None
        target = caller.bundle_imports.get(path[0])
        if target is None:
            return None
        return self._lookup(caller.rel, target.attribute(path[1:]))

    def constant(self, caller: Interpreter, node: ast.expr, env: Env) -> Value | None:
        """The constant a module-level name of another module of the bundle holds, as
        `caller` imports it (``from .config import TABLE``, ``config.TABLE``): literal
        text stays a constant across modules. None for anything else."""
        path = _dotted(node)
        if path is None or env.get(path[0]) is not None:
            return None
        target = caller.bundle_imports.get(path[0])
        found = self.index.resolve(caller.rel, target.attribute(path[1:])) if target else None
        if found is None or len(found[1]) != 1 or found[0] not in self.modules:
            return None
        module = self.modules[found[0]]
        module.prepare()
        value = module.module_env.vars.get(found[1][0])
        if value is None or not value.const or value.interesting or value.ref is not None:
            return None
        return Value(const=True, prefix=value.prefix)

    def _lookup(self, rel: str, target: ImportTarget) -> tuple[Interpreter, FunctionInfo] | None:
        for _ in range(_MAX_REEXPORTS + 1):
            found = self.index.resolve(rel, target)
            if found is None:
                return None
            rel, rest = found
            module = self.modules.get(rel)
            if module is None or not rest or len(rest) > 2:
                return None
            info = module.functions.get(".".join(rest))
            if info is not None:
                return module, info
            made = module.instance_class(rest[0]) if len(rest) == 2 else None
            if made is not None:  # ``store.get`` of ``store = Repo()`` there: ``Repo.get``
                info = module.functions.get(f"{made}.{rest[1]}")
                if info is not None:
                    return module, info
                rest = (made, rest[1])
            again = module.bundle_imports.get(rest[0])  # re-exported from elsewhere
            if again is None or rest[0] in module.imports.defined:
                return None
            target = again.attribute(rest[1:])
        return None
