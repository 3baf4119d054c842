"""What a call to code outside the module returns: how labels pass through it.

An unknown call passes on the event data of its arguments and receiver, and exception
details only once they are text; sanitizers return constants; ``str``/``repr``/``format``
and path joins keep what is known of the text's beginning (`Value.prefix`); a mutating
method (``xs.append(x)``) adds its arguments' labels to the receiver's variable.
"""

from __future__ import annotations

import ast

from donjon.scan.python.hits import CallSite
from donjon.scan.python.sources import EXC_SOURCES, METHOD_SANITIZERS, SANITIZERS
from donjon.scan.python.values import (
    HOLDING_BUILTINS,
    UNKNOWN,
    Env,
    Step,
    Trace,
    Value,
    constant,
    join_all,
)

__all__ = ["call_result", "dotted"]

_PURE = HOLDING_BUILTINS | frozenset(
    {
        "min",
        "max",
        "sum",
    }
)
_MUTATORS = frozenset(
    {"append", "extend", "add", "insert", "update", "setdefault", "appendleft", "extendleft"}
)
_PATH_JOINS = frozenset(
    {"os.path.join", "posixpath.join", "pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath"}
)


def _passed_on(values: list[Value]) -> Trace | None:
    return next((t for v in values if (t := v.passed_on()) is not None), None)


def dotted(node: ast.expr) -> str | None:
    """The environment's key for a name or an attribute chain (``a.b.c``); None otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def call_result(site: CallSite, env: Env) -> Value:
    """What a call to something outside the module returns, from what it was given
    (`env` is where a mutating method's receiver is updated: ``xs.append(x)``)."""
    node, qual, method, receiver, args = (
        site.node,
        site.qual,
        site.method,
        site.receiver,
        site.args,
    )
    func = node.func
    everything = [*args, *site.kwargs.values()]
    if qual in SANITIZERS or method in METHOD_SANITIZERS:
        return constant()
    if qual in EXC_SOURCES:
        return Value(exc=(Step(node.lineno, node.col_offset + 1, f"{qual}()"),))
    if qual == "tempfile.gettempdir":
        # Models the runtime value; nothing is written there.
        return Value(prefix="/tmp")  # noqa: S108  # nosec B108 - what gettempdir() returns, not a file made
    if qual in _PATH_JOINS and args and args[0].prefix is not None:
        out = join_all(everything)
        joined = args[0].prefix.rstrip("/") + "/"
        if len(args) > 1 and args[1].const and args[1].prefix is not None:
            joined += args[1].prefix
        return Value(out.taint, out.exc, out.const, False, joined, confined=out.confined)
    if method is not None and receiver is not None:
        if method in _MUTATORS and isinstance(func, ast.Attribute):
            _mutate(func.value, receiver, everything, env)
            return UNKNOWN
        out = receiver.mix(join_all(everything))
        if method == "format" and receiver.prefix is not None:
            return Value(
                out.taint,
                out.exc,
                out.const,
                not out.const,
                receiver.prefix.split("{")[0],
                confined=out.confined,
            )
        if method == "join" and receiver.prefix is not None:  # "sep".join(parts)
            return Value(out.taint, out.exc, out.const, out.built or not out.const)
        known_text = out.const and receiver.prefix is not None
        exc = receiver.passed_on() or _passed_on(everything)
        return Value(out.taint, exc, known_text, receiver.built)
    out = join_all(everything)
    if qual in _PURE:  # str(e), repr(e), format(e): the exception as text
        prefix = args[0].prefix if qual == "str" and len(args) == 1 else None
        return Value(out.taint, out.exc, out.const, out.built, prefix)
    return Value(out.taint, _passed_on(everything))


def _mutate(target: ast.expr, receiver: Value, added: list[Value], env: Env) -> None:
    key = dotted(target)
    if key is None:
        return
    grown = receiver.mix(join_all(added))
    head = receiver.head
    env.set(
        key,
        Value(grown.taint, grown.exc, grown.const, grown.built, None, head, secret=grown.secret),
    )
