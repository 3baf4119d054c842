"""What a Terraform expression evaluates to, before the model.

Plain Python values (str, int, float, bool, None) and these:

- `Obj` and `Arr`: an object or tuple, carrying the line it was written on (the
  shared `statements` parser reads ``line`` from them);
- `Ref`: an attribute of a resource of the module that Terraform only knows after
  apply (``aws_iam_role.fn.arn``), a string naming it, with the resource's address;
- `Json`: the result of ``jsonencode`` or a policy document's ``.json``, a string
  that keeps the structure it encodes;
- `Choice`: the values of a conditional whose condition is not known, or of a
  variable that several ``.tfvars`` files set differently;
- `Unresolved` (from the model): what cannot be known, with the expression as written.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from donjon.scan.iac.model import EnvVar, Unresolved, Val

__all__ = [
    "MAX_WEIGHT",
    "Arr",
    "Choice",
    "Json",
    "Obj",
    "Ref",
    "TooLarge",
    "bounded",
    "describe",
    "env_vars",
    "to_bool",
    "to_int",
    "to_str",
    "to_strs",
    "to_val",
    "weight",
]

T = TypeVar("T")


class Obj(dict[str, Any]):
    """An HCL object, with its line and each key's own (`lines`)."""

    def __init__(self, items: dict[str, Any] | None = None, line: int = 0) -> None:
        super().__init__(items or {})
        self.line = line
        self.lines: dict[str, int] = {}

    def line_of(self, key: str, default: int) -> int:
        """The line `key` is written on (`default` when not known)."""
        return self.lines.get(key) or default


class Arr(list[Any]):
    """An HCL tuple, with its line."""

    def __init__(self, items: list[Any] | None = None, line: int = 0) -> None:
        super().__init__(items or [])
        self.line = line


class Ref(str):
    """An attribute of a resource of this module known only after apply."""

    address: str
    attribute: str

    def __new__(cls, address: str, attribute: str) -> Ref:
        ref = super().__new__(cls, f"{address}.{attribute}")
        ref.address = address
        ref.attribute = attribute
        return ref


#: The most a value may weigh (`weight`): about 64 MiB of text. A template is untrusted
#: input, and locals that double a string or a list at each level would otherwise grow
#: without bound.
MAX_WEIGHT = 1 << 20


class TooLarge(ValueError):
    """A value past `MAX_WEIGHT`: left unresolved rather than built."""


def weight(value: Any, memo: dict[int, int] | None = None) -> int:
    """What building `value` out costs: one per element, one per 64 characters of text,
    shared parts counted as often as they appear (JSON text repeats them)."""
    memo = {} if memo is None else memo
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, str):
        cost = 1 + len(value) // 64
    elif isinstance(value, dict):
        cost = 1 + len(value) + sum(weight(v, memo) for v in value.values())
    elif isinstance(value, list | tuple):
        cost = 1 + sum(weight(v, memo) for v in value)
    else:
        cost = 1
    memo[key] = cost
    return cost


def describe(value: Any, budget: int = 120) -> str:
    """A value as a short text for a note or an unresolved expression: its start, never
    the whole of a value that may be large or share its parts many times."""
    out: list[str] = []
    size = 0
    pending: list[Any] = [value]
    while pending and size <= budget:
        item = pending.pop()
        if isinstance(item, _Text):
            text = item.text
        elif isinstance(item, Unresolved):
            text = item.expression
        elif isinstance(item, dict):
            text = "{"
            rest: list[Any] = [_Text("}")]
            for key, child in reversed(list(item.items())[:8]):
                rest += [child, _Text(f"{key} = ")]
            pending.extend(rest)
        elif isinstance(item, list | tuple):
            text = "["
            pending.append(_Text("]"))
            pending.extend(reversed(list(item)[:8]))
        elif isinstance(item, str):
            text = json.dumps(item[: budget + 1])
        else:
            text = json.dumps(item) if isinstance(item, int | float | bool | None) else "?"
        out.append(text if not out or text in "]}" or out[-1].endswith(("[", "= ")) else " " + text)
        size += len(out[-1])
    joined = "".join(out)
    return joined if len(joined) <= budget and not pending else joined[:budget] + "..."


class _Text:
    """Punctuation in `describe`'s work list."""

    def __init__(self, text: str) -> None:
        self.text = text


def bounded(value: Any) -> Any:
    """`value`, or `TooLarge` raised when it weighs more than `MAX_WEIGHT` (or nests too
    deeply to weigh)."""
    try:
        heavy = weight(value) > MAX_WEIGHT
    except RecursionError:
        heavy = True
    if heavy:
        raise TooLarge("value too large to evaluate")
    return value


class Json(str):
    """A JSON text built in the template, with the value it encodes."""

    value: Any

    def __new__(cls, value: Any) -> Json:
        text = json.dumps(bounded(value), default=str, sort_keys=True)
        made = super().__new__(cls, text)
        made.value = value
        return made


class Choice(tuple[Any, ...]):
    """A value that may be any of these (a condition or a variable file decides)."""


def _flat(value: Any) -> list[Any]:
    return [v for item in value for v in _flat(item)] if isinstance(value, Choice) else [value]


def to_val(value: Any, line: int, convert: type[T]) -> Val[T]:
    """A property's `Val`: its known values of type `convert` (strings, numbers and
    booleans converted as Terraform converts them), the rest unresolved."""
    options = _flat(value)
    conditional = isinstance(value, Choice)
    known: list[T] = []
    unknown: list[Unresolved] = []
    for option in options:
        if option is None:
            continue
        if isinstance(option, Unresolved):
            unknown.append(option)
            continue
        converted = _convert(option, convert)
        if converted is None:
            unknown.append(Unresolved(describe(option), f"not a {convert.__name__}"))
        elif converted not in known:
            known.append(converted)
    return Val(tuple(known), tuple(unknown), line, conditional)


def _convert(value: Any, convert: type[T]) -> T | None:
    result: Any = None
    if convert is str:
        if isinstance(value, bool):
            result = "true" if value else "false"
        elif isinstance(value, str | int | float):
            result = str(value)
    elif convert is bool:
        if isinstance(value, bool):
            result = value
        elif isinstance(value, str) and value in ("true", "false"):
            result = value == "true"
    elif convert is int:
        if isinstance(value, int) and not isinstance(value, bool):
            result = value
        elif (isinstance(value, str) and value.lstrip("-").isdigit()) or (
            isinstance(value, float) and value.is_integer()
        ):
            result = int(value)
    return result  # type: ignore[no-any-return]


def env_vars(value: Any, line: int) -> tuple[EnvVar, ...]:
    """A map of environment variables (``environment.variables``, ``app_settings``),
    each with its own line; a map that is not known is one variable named ``*``."""
    if isinstance(value, dict):
        at = value.line_of if isinstance(value, Obj) else (lambda _key, default: default)
        return tuple(EnvVar(str(k), to_str(v, at(str(k), line))) for k, v in value.items())
    return (EnvVar("*", to_str(value, line)),) if line else ()


def to_strs(value: Any, line: int) -> Val[str]:
    """A list of strings (CORS origins) as one `Val` of every string it holds."""
    items = list(value) if isinstance(value, list) else [value]
    parts = [to_str(item, line) for item in items]
    known = tuple(k for part in parts for k in part.known)
    unknown = tuple(u for part in parts for u in part.unresolved)
    return Val(known, unknown, line, isinstance(value, Choice))


def to_str(value: Any, line: int) -> Val[str]:
    return to_val(value, line, str)


def to_int(value: Any, line: int) -> Val[int]:
    return to_val(value, line, int)


def to_bool(value: Any, line: int) -> Val[bool]:
    return to_val(value, line, bool)
