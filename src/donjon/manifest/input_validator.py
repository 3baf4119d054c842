"""The validator of a function's `input_schema`, with regular expressions in linear time.

jsonschema runs `pattern` and `patternProperties` with Python's backtracking `re`: a
pattern such as ``^(a+)+$`` takes exponential time on a crafted string, on the node's
event loop, for every call. Here those keywords (and `additionalProperties`, which
matches property names against `patternProperties`) use RE2, whose matching time is
linear in the input. At deploy, every pattern must compile under RE2: backreferences
and lookaround (the features that need backtracking) are refused with a clear error,
and `unevaluatedProperties` may not be combined with `patternProperties` (jsonschema
would match those with `re`).

The keywords jsonschema checks in more than linear time in the event (`uniqueItems`,
`unevaluatedItems`, `unevaluatedProperties`) are redone in linear time, and `multipleOf`
answers for integers past a float instead of raising (schema_keywords.py).

An event that plainly matches a simple schema is let through by a quick check of
its own (schema_check.py) without building jsonschema's validators; every other
event, and every error message, is jsonschema's.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import re2
from jsonschema import Draft202012Validator, ValidationError, validators

from donjon.manifest.schema_check import compile_check
from donjon.manifest.schema_keywords import LINEAR_KEYWORDS

__all__ = ["InputValidator", "check_patterns", "input_validator"]

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # an invalid pattern is the deployer's error, not a log line


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _OPTIONS)


def _search(pattern: str, text: str) -> bool:
    return _compiled(pattern).search(text) is not None


def check_patterns(schema: Any) -> None:
    """ValueError if a pattern of `schema` does not compile under RE2, or if
    unevaluatedProperties is used together with patternProperties."""
    stack = [schema]
    has_unevaluated = has_pattern_properties = False
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        patterns = []
        if isinstance(node.get("pattern"), str):
            patterns.append(node["pattern"])
        if isinstance(node.get("patternProperties"), dict):
            has_pattern_properties = True
            patterns.extend(str(k) for k in node["patternProperties"])
        has_unevaluated = has_unevaluated or "unevaluatedProperties" in node
        for pattern in patterns:
            try:
                _compiled(pattern)
            except re2.error as e:
                why = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
                raise ValueError(
                    f"input_schema: pattern {pattern[:80]!r} is not supported ({why}); "
                    "patterns run in linear time (RE2): no backreferences or lookaround"
                ) from None
        stack.extend(
            v for k, v in node.items() if k not in ("enum", "const", "default", "examples")
        )
    if has_unevaluated and has_pattern_properties:
        raise ValueError(
            "input_schema: unevaluatedProperties cannot be combined with "
            "patternProperties; use additionalProperties"
        )


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """Properties neither named in `properties` nor matched by `patternProperties`
    must satisfy `additional` (JSON Schema 2020-12, 10.3.2.3)."""
    if not validator.is_type(instance, "object"):
        return
    named = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [k for k in instance if k not in named and not any(_search(p, k) for p in patterns)]
    if validator.is_type(additional, "object"):
        for key in extras:
            yield from validator.descend(instance[key], additional, path=key)
    elif additional is False and extras:
        listed = ", ".join(repr(k) for k in sorted(extras)[:20])
        yield ValidationError(
            f"Additional properties are not allowed ({listed} "
            f"{'was' if len(extras) == 1 else 'were'} unexpected)"
        )


_InputValidator = validators.extend(  # type: ignore[no-untyped-call]  # untyped in its stubs
    Draft202012Validator,
    {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
        **LINEAR_KEYWORDS,  # uniqueItems, unevaluated*, multipleOf (schema_keywords.py)
    },
)


class InputValidator:
    """The validator of one schema: `iter_errors` says nothing for an event the quick check
    (schema_check.py) finds valid, and asks jsonschema about every other one."""

    __slots__ = ("_full", "quick")

    def __init__(self, schema: dict[str, Any]) -> None:
        self._full = _InputValidator(schema)
        #: The quick check (schema_check.py): True is "valid"; None, no quick check.
        self.quick = compile_check(schema)

    @property
    def schema(self) -> Any:
        return self._full.schema

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]:
        if self.quick is not None and self.quick(instance):
            return iter(())
        errors: Iterator[ValidationError] = self._full.iter_errors(instance)
        return errors

    def is_valid(self, instance: Any) -> bool:
        return next(self.iter_errors(instance), None) is None


def input_validator(schema: dict[str, Any]) -> InputValidator:
    """A validator for events against `schema` (already checked at deploy)."""
    return InputValidator(schema)
