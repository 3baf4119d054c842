"""A quick yes for events that plainly match a function's `input_schema`.

`jsonschema` builds a validator object per subschema it descends into, which
made checking a one-field event cost about as much as the rest of the call's
gateway work. Most input schemas use a handful of keywords (`type`,
`properties`, `required`, `additionalProperties: false`, string and number
bounds, `items`): `compile_check` turns such a schema into plain closures that
answer "valid" or "not sure".

Only "valid" is ever trusted: anything else (a failed check, a schema with a
keyword this module does not know, an integer written as `1.0`) goes to the
full validator, which decides and words the error. So this can only ever be
stricter than `jsonschema`, never laxer: each check below reads the keyword
exactly as Draft 2020-12 does, and a keyword it does not model (`$schema` and
`$id` included, which may switch dialects) makes the whole schema go to
`jsonschema` every time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Check", "compile_check"]

#: True: the instance is valid. False: not sure (the full validator decides).
Check = Callable[[Any], bool]

#: Keywords that assert nothing (annotations): skipped.
_ANNOTATIONS = frozenset({"$comment", "title", "description", "default", "examples", "deprecated"})


def _is_number(value: Any) -> bool:
    return (type(value) is int) or (type(value) is float)  # bool is no number in JSON Schema


#: JSON types as parsed by `json.loads`. An integer-valued float ("1.0") is "integer" to
#: jsonschema: not modelled, so it is "not sure" (False) here.
_TYPES: dict[str, Check] = {
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "string": lambda v: type(v) is str,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "integer": lambda v: type(v) is int,
    "number": _is_number,
}


def compile_check(schema: Any) -> Check | None:
    """A check for `schema`, or None if it uses anything this module does not model."""
    if schema is True:
        return lambda _value: True
    if not isinstance(schema, Mapping):
        return None
    checks: list[Check] = []
    for keyword in schema:
        if keyword in _ANNOTATIONS or keyword in _HANDLED:
            continue
        return None  # not modelled: the full validator, always
    kinds = schema.get("type")
    if kinds is not None:
        names = [kinds] if isinstance(kinds, str) else kinds
        if not isinstance(names, list) or not names or any(n not in _TYPES for n in names):
            return None
        tests = [_TYPES[n] for n in names]
        checks.append(tests[0] if len(tests) == 1 else lambda v: any(t(v) for t in tests))
    for part in (_object_checks, _string_checks, _number_checks, _array_checks):
        made = part(schema)
        if made is None:
            return None
        checks.extend(made)
    return _every(checks)


def _every(checks: list[Check]) -> Check:
    """One check that is true when each of `checks` is, asked in order (the common one or
    two without a generator: a call per check, where `all` over a generator took three)."""
    if not checks:
        return lambda _value: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda value: first(value) and second(value)

    def check_every(value: Any) -> bool:
        for check in checks:  # noqa: SIM110 - `all` over a generator costs calls a check
            if not check(value):
                return False
        return True

    return check_every


def _object_checks(schema: Mapping[str, Any]) -> list[Check] | None:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    additional = schema.get("additionalProperties", True)
    if not isinstance(properties, Mapping) or not isinstance(required, list):
        return None
    if additional not in (True, False) or not all(isinstance(r, str) for r in required):
        return None
    subs: dict[str, Check] = {}
    for name, sub in properties.items():
        check = compile_check(sub)
        if check is None:
            return None
        subs[name] = check
    if not subs and not required and additional is True:
        return []
    closed = additional is False

    def check_object(value: Any) -> bool:
        if type(value) is not dict:
            return True  # these keywords say nothing of other types
        for name in required:
            if name not in value:
                return False
        for name, item in value.items():
            sub = subs.get(name)
            if sub is None:
                if closed:
                    return False
            elif not sub(item):
                return False
        return True

    return [check_object]


def _bound(schema: Mapping[str, Any], keyword: str) -> float | bool | None:
    """The keyword's number, None if absent, False if it is not a number."""
    value = schema.get(keyword)
    if value is None:
        return None
    return value if _is_number(value) else False


def _string_checks(schema: Mapping[str, Any]) -> list[Check] | None:
    low, high = _bound(schema, "minLength"), _bound(schema, "maxLength")
    if low is False or high is False:
        return None
    if low is None and high is None:
        return []
    lo = low if low is not None else 0
    hi = high if high is not None else float("inf")
    return [lambda v: type(v) is not str or lo <= len(v) <= hi]


def _number_checks(schema: Mapping[str, Any]) -> list[Check] | None:
    bounds = [
        _bound(schema, k) for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
    ]
    if any(b is False for b in bounds):
        return None
    low, high, xlow, xhigh = bounds
    if all(b is None for b in bounds):
        return []

    def check_number(v: Any) -> bool:
        if not _is_number(v):
            return True  # the bounds say nothing of other types
        # Written so that NaN fails every bound (then the full validator decides).
        return (
            (low is None or v >= low)
            and (high is None or v <= high)
            and (xlow is None or v > xlow)
            and (xhigh is None or v < xhigh)
        )

    return [check_number]


def _array_checks(schema: Mapping[str, Any]) -> list[Check] | None:
    low, high = _bound(schema, "minItems"), _bound(schema, "maxItems")
    if low is False or high is False:
        return None
    items = schema.get("items")
    sub = None if items is None else compile_check(items)
    if items is not None and sub is None:
        return None
    if low is None and high is None and sub is None:
        return []
    lo = low if low is not None else 0
    hi = high if high is not None else float("inf")

    def check_array(value: Any) -> bool:
        if type(value) is not list:
            return True
        if not lo <= len(value) <= hi:
            return False
        return sub is None or all(sub(item) for item in value)

    return [check_array]


#: The keywords modelled above.
_HANDLED = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "items",
        "minItems",
        "maxItems",
    }
)
