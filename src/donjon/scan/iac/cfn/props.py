"""Reading resolved properties into the model's `Val`s, with their lines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from donjon.scan.iac.cfn.template import Resource
from donjon.scan.iac.cfn.values import RMap, options, val
from donjon.scan.iac.model import Val

__all__ = ["as_bool", "as_int", "as_str", "child", "prop", "referenced"]

T = TypeVar("T")


def as_str(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, str | int | float) else None


def as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(str(value)) if isinstance(value, str | int) else None
    except ValueError:
        return None


def as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def child(source: object, *path: str) -> tuple[object, int]:
    """The value at `path` under a resolved mapping and the line of its last key
    (None and 0 when absent; a branch of an ``Fn::If`` on the way is followed into
    its first mapping)."""
    current: object = source
    line = getattr(source, "line", 0)
    for key in path:
        current = next((o for o, _ in options(current) if isinstance(o, Mapping)), None)
        if current is None or key not in current:
            return None, 0
        line = current.line_of(key) if isinstance(current, RMap) else line
        current = current[key]
    return current, line


def prop(
    resource: Resource,
    *path: str,
    convert: Callable[[object], T | None],
    source: object = None,
) -> Val[T]:
    """A property of `resource` (or under `source`) as a `Val`; conditional when the
    resource has a ``Condition``."""
    value, line = child(resource.properties if source is None else source, *path)
    return val(
        value, line, convert, conditional=resource.conditional, what=".".join(path) or "value"
    )


def referenced(raw: object) -> str:
    """The logical id a decoded value points at (``Ref``, ``Fn::GetAtt``, or an
    ``Fn::Sub`` of one ``${Name}``/``${Name.Arn}``), or "" when it names none."""
    if not isinstance(raw, Mapping) or len(raw) != 1:
        return ""
    key, arg = next(iter(raw.items()))
    if key == "Ref" and isinstance(arg, str):
        return arg
    if key == "Fn::GetAtt":
        if isinstance(arg, str):
            return arg.split(".", 1)[0]
        if isinstance(arg, list) and arg and isinstance(arg[0], str):
            return arg[0]
    if key == "Fn::Sub" and isinstance(arg, str) and arg.startswith("${") and arg.endswith("}"):
        inner = arg[2:-1]
        return "" if "${" in inner else inner.split(".", 1)[0]
    return ""
