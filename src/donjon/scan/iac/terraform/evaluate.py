"""Terraform expressions evaluated as far as the module makes them known.

Literals, strings with interpolation, heredocs (their ``${...}`` too), tuples,
objects, operators, conditionals (a condition that is not known gives a `Choice` of
both branches), references (through the `Lookup` the module gives: variables,
locals, resources, data sources) and a few pure functions (`FUNCTIONS`). Anything
else (``for`` expressions, splats, template directives, other functions) is
`Unresolved` with the expression as written: never guessed, never dropped.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import Any

from lark import Token, Tree

from donjon.scan.iac.interface import IacError
from donjon.scan.iac.model import Unresolved
from donjon.scan.iac.terraform.functions import FUNCTIONS
from donjon.scan.iac.terraform.operations import as_text, choose, operate, why
from donjon.scan.iac.terraform.syntax import Expr, line_of, parse_expression, unescape
from donjon.scan.iac.terraform.values import (
    Arr,
    Choice,
    Obj,
    TooLarge,
    bounded,
)

__all__ = ["Evaluator", "Key", "Lookup", "Step", "step_into"]

#: A traversal step: an attribute name or an index (an unknown index is `Unresolved`).
Step = str | int | Unresolved


class Key(str):
    """A string index written in brackets (``r["a"]``), told apart from ``r.a``."""


#: Resolves ``root.step.step...`` (``var.x``, ``aws_iam_role.r.arn``); gets the steps and
#: the traversal as written.
Lookup = Callable[[list[Step], str], Any]

_INTERPOLATION = re.compile(r"(?<!\$)\$\{([^{}]*)\}")
#: Expression nesting evaluated at most (each level costs a few Python frames).
MAX_DEPTH = 100
#: The longest string built by interpolation (1 MiB).
MAX_TEXT = 1 << 20


def _trees(node: Tree[Token]) -> list[Tree[Token]]:
    return [c for c in node.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]


def _tokens(node: Tree[Token]) -> list[Token]:
    return [c for c in node.children if isinstance(c, Token)]


def step_into(value: Any, step: Step, written: str) -> Any:
    """``value.step`` or ``value[step]``; unknown when either is."""
    if isinstance(value, Unresolved):
        return value
    if isinstance(step, Unresolved):
        return Unresolved(written, f"index {step.expression} not known")
    if isinstance(value, dict) and isinstance(step, str) and step in value:
        return value[step]
    if isinstance(value, list) and isinstance(step, int) and -len(value) <= step < len(value):
        return value[step]
    return Unresolved(written, "no such attribute or element")


class Evaluator:
    """Evaluates the expressions of one module; `lookup` resolves its references."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup
        self._depth = 0

    def value(self, expr: Expr) -> Any:
        return self._eval(expr, expr.tree)

    def _eval(self, expr: Expr, node: Tree[Token]) -> Any:
        """`node`'s value; nesting (of expressions and of the locals and attributes they
        refer to) past `MAX_DEPTH` is unresolved rather than a RecursionError."""
        if self._depth >= MAX_DEPTH:
            return Unresolved(expr.written(node)[:200], "nested too deeply to evaluate")
        self._depth += 1
        try:
            return self._node(expr, node)
        finally:
            self._depth -= 1

    def _node(self, expr: Expr, node: Tree[Token]) -> Any:
        kind = node.data
        if kind == "expr_term":
            return self._eval(expr, _trees(node)[0])
        if kind in ("int_lit", "float_lit"):
            text = str(_tokens(node)[0])
            return float(text) if kind == "float_lit" else int(text)
        if kind == "literal_value":
            return {"true": True, "false": False}.get(str(_tokens(node)[0]))
        if kind == "string":
            return self._string(expr, node)
        if kind in ("heredoc_template", "heredoc_template_trim"):
            return self._heredoc(expr, node, trim=kind.endswith("trim"))
        if kind == "tuple":
            return Arr([self._eval(expr, c) for c in _trees(node)], line_of(node))
        if kind == "object":
            return self._object(expr, node)
        if kind in ("identifier", "get_attr_expr_term", "index_expr_term"):
            return self._traversal(expr, node)
        if kind == "function_call":
            return self._call(expr, node)
        if kind == "conditional":
            return self._conditional(expr, node)
        if kind == "binary_op":
            return self._binary(expr, node)
        if kind == "unary_op":
            return self._unary(expr, node)
        what = kind.replace("_", " ")
        return Unresolved(expr.written(node), f"{what} not evaluated")

    def _string(self, expr: Expr, node: Tree[Token]) -> Any:
        only = _trees(node)[0].children[0] if len(_trees(node)) == 1 else None
        if isinstance(only, Tree) and only.data == "interpolation":
            # ``"${x}"`` is x itself, not x as text: a list stays a list, a reference a
            # reference (HCL's rule; the JSON syntax writes every expression so).
            return self._eval(expr, _trees(only)[0])
        parts: list[str] = []
        for part in _trees(node):
            child = part.children[0]
            if isinstance(child, Token):
                text = str(child)
                if child.type in ("ESCAPED_INTERPOLATION", "ESCAPED_DIRECTIVE"):
                    text = text[1:]
                else:
                    text = unescape(text)
                parts.append(text)
            elif child.data == "interpolation":
                value = self._eval(expr, _trees(child)[0])
                text_or_why = as_text(value)
                if isinstance(text_or_why, Unresolved):
                    return Unresolved(expr.written(node), text_or_why.reason)
                parts.append(text_or_why)
            else:
                return Unresolved(expr.written(node), "template directive not evaluated")
            if sum(len(p) for p in parts) > MAX_TEXT:
                return Unresolved(expr.written(node)[:200], "string too long to evaluate")
        return "".join(parts)

    def _heredoc(self, expr: Expr, node: Tree[Token], *, trim: bool) -> Any:
        raw = str(_tokens(node)[0])
        lines = raw.replace("\r\n", "\n").split("\n")
        body = "\n".join(lines[1:-2]) + "\n" if len(lines) > 2 else ""
        if trim:
            body = textwrap.dedent(body)
        if "%{" in body.replace("%%{", ""):
            return Unresolved(expr.written(node), "template directive not evaluated")
        out: list[str] = []
        last = 0
        for match in _INTERPOLATION.finditer(body):
            out.append(body[last : match.start()])
            last = match.end()
            try:
                inner = parse_expression(match.group(1))
            except IacError:
                return Unresolved(match.group(0), "interpolation does not parse")
            text_or_why = as_text(self.value(inner))
            if isinstance(text_or_why, Unresolved):
                return Unresolved(match.group(0), text_or_why.reason)
            out.append(text_or_why)
            if sum(len(p) for p in out) > MAX_TEXT:
                return Unresolved(match.group(0), "string too long to evaluate")
        out.append(body[last:])
        return "".join(out).replace("$${", "${")

    def _object(self, expr: Expr, node: Tree[Token]) -> Any:
        out = Obj(line=line_of(node))
        for elem in _trees(node):
            key_node, value_node = _trees(elem)[0], _trees(elem)[-1]
            inner = _trees(key_node)[0]
            bare = inner.data == "keyword" or (
                inner.data == "expr_term" and _trees(inner)[0].data == "identifier"
            )
            key: Any = (
                str(next(iter(inner.scan_values(lambda v: isinstance(v, Token)))))
                if bare
                else self._eval(expr, inner)
            )
            if not isinstance(key, str | int | float | bool):
                return Unresolved(expr.written(node), f"object key {expr.written(key_node)}")
            out[str(key)] = self._eval(expr, value_node)
            out.lines[str(key)] = line_of(elem)
        return out

    def _traversal(self, expr: Expr, node: Tree[Token]) -> Any:
        steps: list[Step] = []
        current = node
        while current.data in ("get_attr_expr_term", "index_expr_term"):
            base, step = _trees(current)
            steps.insert(0, self._step(expr, step))
            current = base
            if current.data == "expr_term" and len(_trees(current)) == 1:
                inner = _trees(current)[0]
                if inner.data in ("get_attr_expr_term", "index_expr_term", "identifier"):
                    current = inner
        if current.data == "identifier":
            name = str(_tokens(current)[0])
            return self._lookup([name, *steps], expr.written(node))
        value = self._eval(expr, current)
        for each in steps:
            value = step_into(value, each, expr.written(node))
        return value

    def _step(self, expr: Expr, step: Tree[Token]) -> Step:
        if step.data == "get_attr":
            return str(next(iter(step.scan_values(lambda v: isinstance(v, Token) and v != "."))))
        if step.data == "short_index":
            return int(str(_tokens(step)[-1]))
        value = self._eval(expr, _trees(step)[0])
        if isinstance(value, bool) or not isinstance(value, str | int):
            return Unresolved(expr.written(step), "index not known")
        return Key(value) if isinstance(value, str) else value

    def _call(self, expr: Expr, node: Tree[Token]) -> Any:
        names = [str(_tokens(n)[0]) for n in _trees(node) if n.data == "identifier"]
        arguments = [a for a in _trees(node) if a.data == "arguments"]
        written = expr.written(node)
        function = FUNCTIONS.get(names[0]) if len(names) == 1 else None
        if function is None or (
            arguments and any(t.type == "ELLIPSIS" for t in _tokens(arguments[0]))
        ):
            return Unresolved(written, f"function {'::'.join(names)} not evaluated")
        args = [self._eval(expr, a) for a in _trees(arguments[0])] if arguments else []
        for arg in args:
            if isinstance(arg, Unresolved | Choice) and names[0] != "jsonencode":
                return Unresolved(written, why(arg))
        try:
            return bounded(function(*bounded(args)))
        except TooLarge:
            return Unresolved(written[:200], "value too large to evaluate")
        except (TypeError, ValueError, KeyError, IndexError, RecursionError) as e:
            return Unresolved(written, f"{names[0]} failed: {e}")

    def _conditional(self, expr: Expr, node: Tree[Token]) -> Any:
        condition, yes, no = _trees(node)
        test = self._eval(expr, condition)
        if isinstance(test, bool):
            return self._eval(expr, yes if test else no)
        return choose(self._eval(expr, yes), self._eval(expr, no), expr.written(node))

    def _binary(self, expr: Expr, node: Tree[Token]) -> Any:
        left_node, term = _trees(node)[0], _trees(node)[1]
        operator_node, right_node = _trees(term)
        operator = str(_tokens(operator_node)[0])
        left, right = self._eval(expr, left_node), self._eval(expr, right_node)
        written = expr.written(node)
        for side in (left, right):
            if isinstance(side, Unresolved | Choice):
                return Unresolved(written, why(side))
        return operate(operator, left, right, written)

    def _unary(self, expr: Expr, node: Tree[Token]) -> Any:
        operand = self._eval(expr, _trees(node)[0])
        operator = str(_tokens(node)[0])
        if isinstance(operand, bool) and operator == "!":
            return not operand
        if isinstance(operand, int | float) and not isinstance(operand, bool) and operator == "-":
            return -operand
        return Unresolved(expr.written(node), why(operand) if why(operand) else "operand")
