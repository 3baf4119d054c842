"""The Terraform functions the resolver evaluates: pure ones whose result follows
from known arguments and that templates use to build names and policies. Every
other function is left unresolved, with the call as written.

``jsonencode`` keeps its argument's structure (`Json`), unknown parts included, so a
policy built with it is read statement by statement; every other function needs all
its arguments known (the evaluator checks before calling).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from donjon.scan.iac.terraform.values import Arr, Json, Obj, TooLarge

_MAX_TEXT = 1 << 20  # as the evaluator's MAX_TEXT
_MAX_COMPARED = 1000  # collections compared one by one in distinct/toset

__all__ = ["FUNCTIONS"]


def _jsondecode(text: Any) -> Any:
    if isinstance(text, Json):
        return text.value
    return _lined(json.loads(str(text)))


def _lined(value: Any) -> Any:
    if isinstance(value, dict):
        return Obj({str(k): _lined(v) for k, v in value.items()})
    if isinstance(value, list):
        return Arr([_lined(v) for v in value])
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("not a list")
    return value


def _join(separator: str, *lists: Any) -> str:
    parts = [str(v) for items in lists for v in _list(items)]
    _fits(sum(map(len, parts)) + len(str(separator)) * len(parts))
    return str(separator).join(parts)


def _replace(text: Any, old: Any, new: Any) -> str:
    subject, before, after = str(text), str(old), str(new)
    slots = subject.count(before) if before else len(subject) + 1
    _fits(len(subject) + slots * max(len(after) - len(before), 0))
    return subject.replace(before, after)


def _fits(length: int) -> None:
    """Refuses to build a string longer than `MAX_TEXT` characters."""
    if length > _MAX_TEXT:
        raise TooLarge("string too long to evaluate")


def _concat(*lists: Any) -> Arr:
    return Arr([v for items in lists for v in _list(items)])


def _merge(*objects: Any) -> Obj:
    out = Obj()
    for item in objects:
        if item is None:
            continue
        if not isinstance(item, dict):
            raise TypeError("merge of a non-object")
        out.update(item)
    return out


def _format(spec: str, *args: Any) -> str:
    """``format`` with ``%s``/``%d``/``%%`` only (the verbs names and ARNs use)."""
    out: list[str] = []
    rest = list(args)
    i = 0
    while i < len(spec):
        if spec[i] == "%" and i + 1 < len(spec):
            verb = spec[i + 1]
            if verb == "%":
                out.append("%")
            elif verb in "sd" and rest:
                out.append(str(rest.pop(0)))
            else:
                raise ValueError(f"format verb %{verb}")
            i += 2
        else:
            out.append(spec[i])
            i += 1
    return "".join(out)


def _distinct(items: Any) -> Arr:
    out = Arr()
    seen: set[Any] = set()
    for item in _list(items):
        if isinstance(item, str | int | float | bool) or item is None:
            if item not in seen:
                seen.add(item)
                out.append(item)
        elif len(out) > _MAX_COMPARED:
            raise TooLarge("too many elements to compare")
        elif item not in out:
            out.append(item)
    return out


def _flatten(items: Any) -> Arr:
    out = Arr()
    for item in _list(items):
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _coalesce(*args: Any) -> Any:
    for arg in args:
        if arg is not None and arg != "":
            return arg
    raise ValueError("no non-null argument")


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "jsonencode": Json,
    "jsondecode": _jsondecode,
    "join": _join,
    "concat": _concat,
    "merge": _merge,
    "format": _format,
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "trimspace": lambda s: str(s).strip(),
    "replace": _replace,
    "tostring": lambda v: v if isinstance(v, str) else json.dumps(v),
    "tonumber": lambda v: v if isinstance(v, int | float) else float(v),
    "tobool": lambda v: v if isinstance(v, bool) else {"true": True, "false": False}[v],
    "tolist": lambda v: Arr(_list(v)),
    "toset": _distinct,
    "distinct": _distinct,
    "flatten": _flatten,
    "compact": lambda v: Arr([i for i in _list(v) if i not in (None, "")]),
    "coalesce": _coalesce,
    "length": len,
}
