"""What the analysis reports, before it becomes a `Finding`: rule, place, grade, trace."""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass

from donjon.scan.model import Confidence, Severity
from donjon.scan.python.imports import ImportMap
from donjon.scan.python.values import Step, Trace, Value

__all__ = ["CallSite", "Hit", "Hits"]


@dataclass(frozen=True)
class Hit:
    """A rule matched at one place."""

    rule_id: str
    line: int
    col: int
    confidence: Confidence
    message: str
    severity: Severity | None = None
    trace: Trace = ()


class Hits:
    """The best hit per rule and line (several analysis contexts can reach one sink)."""

    def __init__(self) -> None:
        self._best: dict[tuple[str, int], Hit] = {}

    def add(self, hit: Hit) -> None:
        key = (hit.rule_id, hit.line)
        old = self._best.get(key)
        if old is None or (hit.confidence, hit.severity or 0) > (old.confidence, old.severity or 0):
            self._best[key] = hit

    def all(self) -> list[Hit]:
        return sorted(self._best.values(), key=lambda h: (h.line, h.col, h.rule_id))


@dataclass
class CallSite:
    """One call being evaluated: what it calls and what is known of its arguments."""

    node: ast.Call
    qual: str | None
    method: str | None
    args: list[Value]
    kwargs: dict[str, Value]
    imports: ImportMap
    hits: Hits
    #: Words around the call (enclosing function name and the statement's text).
    context_text: str = ""
    #: For a method call, the value of the object it is called on.
    receiver: Value | None = None
    #: Evaluates a part of the call's own arguments (a statement inside a list of dicts)
    #: in the caller's scope; None outside the analysis.
    evaluate: Callable[[ast.expr], Value] | None = None

    @property
    def line(self) -> int:
        return self.node.lineno

    @property
    def col(self) -> int:
        return self.node.col_offset + 1

    def arg(self, index: int, name: str | None = None) -> Value | None:
        """The value of positional argument `index`, or of keyword `name`."""
        if index < len(self.args) and not self._starred_before(index):
            return self.args[index]
        if name is not None:
            # f(**d): `d` may hold the keyword.
            return self.kwargs.get(name, self.kwargs.get("**"))
        return None

    def arg_node(self, index: int, name: str | None = None) -> ast.expr | None:
        if index < len(self.node.args):
            return self.node.args[index]
        for kw in self.node.keywords:
            if kw.arg == name:
                return kw.value
        return None

    def keyword_node(self, name: str) -> ast.expr | None:
        for kw in self.node.keywords:
            if kw.arg == name:
                return kw.value
        return None

    def keyword_is(self, name: str, literal: object) -> bool:
        """Whether keyword `name` is given as the literal `literal` (True, False, None...)."""
        node = self.keyword_node(name)
        return isinstance(node, ast.Constant) and node.value is literal

    def _starred_before(self, index: int) -> bool:
        return any(isinstance(a, ast.Starred) for a in self.node.args[: index + 1])

    def report(
        self,
        rule_id: str,
        confidence: Confidence,
        message: str,
        *,
        value: Value | None = None,
        severity: Severity | None = None,
        sink_note: str = "",
    ) -> None:
        trace: Trace = ()
        if value is not None and value.taint is not None:
            trace = (*value.taint, Step(self.line, self.col, sink_note or message))
        elif value is not None and value.exc is not None and rule_id == "DJ-PY-010":
            trace = (*value.exc, Step(self.line, self.col, sink_note or message))
        self.hits.add(Hit(rule_id, self.line, self.col, confidence, message, severity, trace))
