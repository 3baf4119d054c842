"""Sinks handed to functions that call them: ``map(os.system, commands)``,
``pool.submit(exec, code)``, ``threading.Thread(target=subprocess.run, args=(cmd,),
kwargs={"shell": True})``.

The function called is a library's (builtins, threading, multiprocessing,
concurrent.futures, asyncio): it calls the callable it is given with other arguments
of the same call. Each such call is rewritten as the call it makes, with the
callable's qualified name and those arguments, and checked by every sink rule as if
it were written out (sinks.py). Items of an iterable carry what the iterable carries:
``map(os.system, event["commands"])`` runs the event's commands.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from donjon.scan.python.hits import CallSite
from donjon.scan.python.values import Value

__all__ = ["handed_calls"]

#: How the callable is called: with the iterables' items (``items``), with the
#: arguments after it (``rest``), or with an ``args=`` tuple and ``kwargs=`` mapping
#: (``packed``).
Shape = Literal["items", "rest", "packed"]
#: Where the callable is (its position, None if keyword-only; its keyword), and how it
#: is called.
_Where = tuple[int | None, str | None, Shape]

_FUNCTIONS: dict[str, _Where] = {
    "map": (0, None, "items"),
    "filter": (0, None, "items"),
    "functools.reduce": (0, None, "items"),
    "sorted": (None, "key", "items"),
    "min": (None, "key", "items"),
    "max": (None, "key", "items"),
    "asyncio.to_thread": (0, "func", "rest"),
    "threading.Thread": (None, "target", "packed"),
    "threading.Timer": (1, "function", "packed"),
    "multiprocessing.Process": (None, "target", "packed"),
}
#: Methods of objects the analysis does not know (executors, pools, event loops).
_METHODS: dict[str, _Where] = {
    "submit": (0, "fn", "rest"),
    "map": (0, "fn", "items"),
    "imap": (0, "func", "items"),
    "imap_unordered": (0, "func", "items"),
    "starmap": (0, "func", "items"),
    "apply_async": (0, "func", "packed"),
    "apply": (0, "func", "packed"),
    "run_in_executor": (1, "func", "rest"),
}


def handed_calls(site: CallSite) -> list[CallSite]:
    """The calls `site` makes of a callable it is handed that refers to something known
    (each alternative of it), to be checked as written-out calls; [] when none."""
    where = _FUNCTIONS.get(site.qual or "") or _METHODS.get(site.method or "")
    if where is None or site.evaluate is None:
        return []
    index, keyword, shape = where
    given = list(zip(site.node.args, site.args, strict=True))
    handed: Value | None
    if index is not None and index < len(given):
        callable_node, handed = given.pop(index)
        if isinstance(callable_node, ast.Starred):
            return []
    else:
        handed = site.kwargs.get(keyword or "")
    ref = handed.ref if handed is not None else None
    if ref is None or ref.kind != "object" or ref.bound is not None:
        return []
    pairs, keywords = _arguments(site, site.evaluate, given, index, shape)
    if shape == "rest":  # the call's own keywords but the callable's, already evaluated
        keywords = [kw for kw in keywords if kw.arg != keyword]
        kwargs = {kw.arg: site.kwargs[kw.arg] for kw in keywords if kw.arg is not None}
    else:
        kwargs = {kw.arg: site.evaluate(kw.value) for kw in keywords if kw.arg is not None}
    call = ast.Call(func=site.node.func, args=[n for n, _ in pairs], keywords=keywords)
    ast.copy_location(call, site.node)
    return [
        replace(
            site,
            node=call,
            qual=each.name.removeprefix("builtins."),
            method=None,
            args=[v for _, v in pairs],
            kwargs=kwargs,
            receiver=None,
        )
        for each in ref.alternatives()
        if each.kind == "object"
    ]


def _arguments(
    site: CallSite,
    evaluate: Callable[[ast.expr], Value],
    given: list[tuple[ast.expr, Value]],
    index: int | None,
    shape: Shape,
) -> tuple[list[tuple[ast.expr, Value]], list[ast.keyword]]:
    """The arguments (node and value) and keywords the callable is called with; `given`
    are the call's positional arguments but the callable, which was at `index`."""
    after = given[index or 0 :]
    if shape == "items":
        return after, []
    if shape == "rest":
        return after, [kw for kw in site.node.keywords if kw.arg is not None]
    packed = site.keyword_node("args") or (after[0][0] if index is not None and after else None)
    pairs: list[tuple[ast.expr, Value]] = []
    if isinstance(packed, ast.Tuple | ast.List):
        pairs = [(e, evaluate(e)) for e in packed.elts if not isinstance(e, ast.Starred)]
    elif packed is not None:  # a tuple built elsewhere: its items carry what it carries
        pairs = [(packed, evaluate(packed))]
    keywords: list[ast.keyword] = []
    mapping = site.keyword_node("kwargs") or site.keyword_node("kwds")
    if isinstance(mapping, ast.Dict):
        for key, value in zip(mapping.keys, mapping.values, strict=True):
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                keywords.append(ast.keyword(arg=key.value, value=value))
    return pairs, keywords
