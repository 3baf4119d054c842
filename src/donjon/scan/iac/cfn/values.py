"""What the CloudFormation resolver hands back: plain data with lines and branches.

A resolved value is a string, number, boolean or None; an `RMap` or `RList` (a dict
or list carrying its template ``line`` and whether it holds only under a condition);
an `Unresolved` (the expression as written and why); or a `Choice`, the branches of
an ``Fn::If``, each resolved (``AWS::NoValue`` is `NO_VALUE`). The model's `Val`s are
made from these by `val`; policy documents are flattened by `plain` for
`donjon.scan.iac.statements`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from donjon.scan.iac.model import Unresolved, Val

__all__ = [
    "NO_VALUE",
    "Choice",
    "NoValue",
    "RList",
    "RMap",
    "options",
    "plain",
    "val",
    "written",
]

T = TypeVar("T")


class NoValue:
    """``AWS::NoValue``: the property is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = NoValue()


class RMap(dict[str, object]):
    """A resolved mapping, with its line, the lines of its keys, and its condition."""

    def __init__(self, line: int = 0, conditional: bool = False) -> None:
        super().__init__()
        self.line = line
        self.conditional = conditional
        self.key_lines: dict[str, int] = {}

    def line_of(self, key: str) -> int:
        """The line a key is written on (the mapping's own line when unknown)."""
        return self.key_lines.get(key, self.line)


class RList(list[object]):
    """A resolved list, with its line, its items' lines, and its condition."""

    def __init__(self, line: int = 0, conditional: bool = False) -> None:
        super().__init__()
        self.line = line
        self.conditional = conditional
        self.item_lines: list[int] = []

    def line_at(self, index: int) -> int:
        """The line item `index` is written on (the list's own line when unknown)."""
        found = self.item_lines[index] if index < len(self.item_lines) else 0
        return found or self.line


@dataclass(frozen=True)
class Choice:
    """The branches of an ``Fn::If``: the property takes one of them, whichever the
    condition picks at deploy time."""

    branches: tuple[object, ...]


def written(node: object) -> str:
    """An expression as written, in YAML short form where it is an intrinsic."""
    if isinstance(node, Mapping) and len(node) == 1:
        key, arg = next(iter(node.items()))
        if key == "Ref" or (isinstance(key, str) and key.startswith("Fn::")):
            name = "Ref" if key == "Ref" else key[4:]
            if name == "GetAtt" and isinstance(arg, list):
                arg = ".".join(str(a) for a in arg)
            text = arg if isinstance(arg, str) else json.dumps(arg, default=str)
            return f"!{name} {text}"
    if isinstance(node, str):
        return node
    return json.dumps(node, default=str)


def options(value: object) -> Iterator[tuple[object, bool]]:
    """Every value a resolved value may take, with whether it is conditional
    (``NO_VALUE`` branches are left out: the property is then absent)."""
    if isinstance(value, Choice):
        for branch in value.branches:
            for inner, _ in options(branch):
                yield inner, True
    elif value is not NO_VALUE and value is not None:
        yield value, bool(getattr(value, "conditional", False))


def val(
    value: object,
    line: int,
    convert: Callable[[object], T | None],
    *,
    conditional: bool = False,
    what: str = "value",
) -> Val[T]:
    """A model `Val` from a resolved value: each branch converted (a value `convert`
    refuses is unresolved, shown as written)."""
    known: list[T] = []
    unknown: list[Unresolved] = []
    cond = conditional
    for option, branch in options(value):
        cond = cond or branch
        if isinstance(option, Unresolved):
            unknown.append(option)
            continue
        converted = convert(option)
        if converted is None:
            unknown.append(Unresolved(written(option), f"{what} is not what it should be"))
        elif converted not in known:
            known.append(converted)
    return Val(tuple(known), tuple(unknown), line, cond)


def plain(value: object, conditional: bool = False) -> object:
    """A resolved value without `Choice`s, for the statement parser: a branch in a list
    adds its items, a branch as a value becomes a list of the branches, and every
    mapping holding a branch (or inside one) is marked conditional."""
    if isinstance(value, Choice):
        out = RList(0, True)
        for branch, _ in options(value):
            item = plain(branch, True)
            out.extend(item if isinstance(item, RList) and item.conditional else [item])
        return out
    if isinstance(value, RMap | dict):
        line = getattr(value, "line", 0)
        inner = {k: plain(v, conditional) for k, v in value.items() if v is not NO_VALUE}
        out_map = RMap(line, conditional or _has_choice(value))
        out_map.update(inner)
        return out_map
    if isinstance(value, list):
        out_list = RList(getattr(value, "line", 0), conditional)
        for item in value:
            if isinstance(item, Choice):
                out_list.extend(x for x in _as_list(plain(item, True)))
            elif item is not NO_VALUE:
                out_list.append(plain(item, conditional))
        return out_list
    return value


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else [value]


def _has_choice(value: object) -> bool:
    if isinstance(value, Choice):
        return True
    if isinstance(value, dict):
        return any(_has_choice(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_choice(v) for v in value)
    return False
