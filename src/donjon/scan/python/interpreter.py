"""The intra-module taint analysis of one module, and its calls into the others of a bundle.

Flow-sensitive over each function (statements.py: branches are analysed separately and
joined; loops twice), context-sensitive across the module's own functions (calls.py)
and, within a `Bundle`, the functions other modules of the bundle define (a call with
event data analyses the callee, in its own module, with its parameters labelled,
memoised per label pattern: `call_other` here). Entry points are the manifest's handler,
any ``def f(event, context)``, and web routes (``@app.route``/``@app.get``...), whose
parameters carry caller data (entries.py).
"""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING

from donjon.scan.errors import ScanError
from donjon.scan.python.bundle import relocate
from donjon.scan.python.calls import CallInterpreter
from donjon.scan.python.entries import entry_arguments, entry_kind
from donjon.scan.python.frames import Frame, FunctionInfo
from donjon.scan.python.hits import CallSite, Hit, Hits
from donjon.scan.python.imports import ImportMap
from donjon.scan.python.modules import bundle_imports
from donjon.scan.python.sinks import check_call
from donjon.scan.python.values import Env, Step, Value
from donjon.scan.syntax import Syntax

if TYPE_CHECKING:
    from donjon.scan.python.bundle import Bundle

__all__ = ["Interpreter"]

#: Statements interpreted per statement in the module before the analysis gives up.
_BUDGET_PER_STATEMENT = 200
#: Work units (expressions evaluated, parameters bound) per syntax node of the module
#: before the analysis gives up; the standard library needs under 2 per node.
_EVALUATIONS_PER_NODE = 25


def _handler_aliases(tree: ast.Module, handlers: frozenset[str]) -> frozenset[str]:
    """Functions the manifest's handler names through a module-level alias
    (``handler = _impl``): they are the handler, whatever their parameters are called."""
    return frozenset(
        stmt.value.id
        for stmt in tree.body
        if isinstance(stmt, ast.Assign)
        and isinstance(stmt.value, ast.Name)
        and any(isinstance(t, ast.Name) and t.id in handlers for t in stmt.targets)
    )


def _attributes_assigned(tree: ast.Module) -> set[str]:
    """The attribute names the module assigns anywhere (``x.name = ...``, ``x.name += ...``)."""
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del)
    }


class Interpreter(CallInterpreter):
    """Analyses one module; findings accumulate in `hits`.

    `rel` is the module's file (relative to the scan root) and `bundle` the bundle it
    belongs to, whose other modules' functions its calls may reach; alone (no bundle),
    calls to other modules are unknown calls."""

    def __init__(
        self,
        tree: ast.Module,
        lines: list[str],
        handlers: frozenset[str],
        *,
        rel: str = "",
        bundle: Bundle | None = None,
        syntax: Syntax | None = None,
    ) -> None:
        """`syntax`: `tree` already indexed (`SourceFile.syntax`), else it is indexed here."""
        super().__init__(ImportMap(tree), Hits(), lines)
        self.tree = tree
        self.handlers = handlers | _handler_aliases(tree, handlers)
        self.rel = rel
        self.bundle = bundle
        self.call_counts: Counter[str] = Counter()
        self._prepared = False
        if syntax is None or syntax.tree is not tree:
            syntax = Syntax.of(tree)
        self.work.evaluation_limit += _EVALUATIONS_PER_NODE * syntax.nodes
        self.work.statement_limit += _BUDGET_PER_STATEMENT * syntax.statements
        for call in syntax.calls:
            f = call.func
            self.call_counts[f.id if isinstance(f, ast.Name) else getattr(f, "attr", "")] += 1
        self.bundle_imports = bundle_imports(syntax.imports, rel) if bundle is not None else {}
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                self._register(stmt, None, self.module_env)
            elif isinstance(stmt, ast.ClassDef):
                for item in stmt.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        self._register(item, stmt.name, self.module_env)
                self._inherit(stmt)

    # -- driving ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Interpret the module's top level once (its globals), before any function of it
        is analysed; a module reached again while it is being prepared (an import cycle)
        is used as far as it got, as Python would."""
        if not self._prepared:
            self._prepared = True
            self.exec_block(self.tree.body, self.module_env, self._top)
            self._class_aliases()

    def run(self) -> list[Hit]:
        """Analyse the module; `ScanError` if it is too complex to analyse in bounded time.

        Within a bundle, other modules' analyses may add findings here later: the
        bundle's findings are read from each module's `hits` once all have run."""
        self.prepare()
        ordered = sorted(self.functions.values(), key=lambda i: (i.entry == "", i.node.lineno))
        for info in ordered:
            if info.entry or not (
                info.node.name.startswith("_") and self.call_counts[info.node.name]
            ):
                self._analyze_entry(info)
        return self.hits.all()

    def instance_class(self, name: str) -> str | None:
        """The class a module-level name is an instance of (``store = Repo()``), by the
        name the class has in this module; None if unknown."""
        self.prepare()
        made = self._instances.get(self._top, {}).get(name)
        return made.id if isinstance(made, ast.Name) else None

    def _inherit(self, cls: ast.ClassDef) -> None:
        """Methods of the module's own base classes (``class Child(Base)``) that `cls` does
        not override are found as its own: ``Child().run(x)`` analyses ``Base.run``."""
        bases = [b.id for b in cls.bases if isinstance(b, ast.Name) and b.id in self._bases]
        self._bases[cls.name] = bases
        for base in bases:
            for qual, info in list(self.functions.items()):
                owner, _, method = qual.partition(".")
                if owner == base and method:
                    self.functions.setdefault(f"{cls.name}.{method}", info)

    def _class_aliases(self) -> None:
        """Class attributes that refer to a callable (``run = subprocess.run``), kept as
        ``Cls.run`` for ``self.run(...)`` and ``Cls.run(...)``; and class constants
        (``TABLE = "items"``) that nothing in the module assigns as an attribute
        (``self.TABLE = ...``, ``repo.TABLE = ...``), so they stay constants there."""
        frame = Frame(None)
        classes = [c for c in self.tree.body if isinstance(c, ast.ClassDef)]
        assigned: set[str] | None = None
        for cls in classes:
            for stmt in cls.body:
                if not isinstance(stmt, ast.Assign):
                    continue
                value = self.eval(stmt.value, self.module_env, frame)
                if not isinstance(stmt.value, ast.Name | ast.Attribute | ast.Call | ast.Subscript):
                    value = replace(value, ref=None)  # a lambda is analysed where it is called
                if value.ref is None and not (value.const and not value.interesting):
                    continue
                if value.ref is None and assigned is None:
                    assigned = _attributes_assigned(self.tree)
                for target in stmt.targets:
                    if isinstance(target, ast.Name) and (
                        value.ref is not None or target.id not in (assigned or ())
                    ):
                        self.module_env.set(f"{cls.name}.{target.id}", value)

    def _register(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef, cls: str | None, closure: Env
    ) -> FunctionInfo:
        qual = f"{cls}.{node.name}" if cls else node.name
        info = FunctionInfo(node, qual, cls, closure, entry_kind(node, self.handlers))
        self.functions.setdefault(qual, info)
        return info

    def _analyze_entry(self, info: FunctionInfo) -> None:
        self.call_with(info, entry_arguments(info), depth=0, site=None)

    # -- the hooks of the evaluator, the statements and the calls ---------------------------
    def check_call(self, site: CallSite, frame: Frame) -> None:
        check_call(site)

    def define_function(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef, env: Env, frame: Frame
    ) -> None:
        info = FunctionInfo(node, node.name, None, env, entry_kind(node, self.handlers))
        frame.local_functions[node.name] = info
        if info.entry or not self.call_counts[node.name]:
            self._analyze_entry(info)

    def imported(self, node: ast.Name | ast.Attribute, env: Env) -> Value | None:
        return self.bundle.constant(self, node, env) if self.bundle is not None else None

    def call_other(self, site: CallSite, func: ast.expr, env: Env, frame: Frame) -> Value | None:
        """A call to a function another module of the bundle defines, analysed there."""
        found = self.bundle.resolve(self, func, env) if self.bundle else None
        if found is None:
            return None
        callee, info = found
        moved = replace(
            site,
            args=[relocate(v, self.rel) for v in site.args],
            kwargs={k: relocate(v, self.rel) for k, v in site.kwargs.items()},
        )
        step = Step(site.line, site.col, self.text(site.line), path=self.rel)
        values = callee.arguments(info, moved, step)
        try:
            callee.prepare()
            result = callee.call_with(info, values, frame.depth + 1, (self.rel, site.line))
        except ScanError as e:
            if e.message.startswith(callee.rel + ": "):
                raise
            raise ScanError(f"{callee.rel}: {e.message}", hint=e.hint) from e
        result = relocate(result, callee.rel)
        note = f"returned by {info.node.name}() of {callee.rel}"
        return result.step(Step(site.line, site.col, note))
