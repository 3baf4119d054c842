"""JSON Schema keywords that jsonschema checks in more than linear time, redone in linear time.

An input_schema is checked on the node's event loop, on every way in (the invoke API, http
triggers, webhooks, storage and database events, the queue's deliveries), against events of
up to `limits.body` (1 MiB by default): a keyword quadratic in the event holds every call of
the node. jsonschema's are, for these:

- `uniqueItems`: items that do not sort (numbers and a string, objects) are compared pair by
  pair: ~12,000 items (100 KB) held the node for minutes. Here each item becomes a hashable
  canonical form (JSON Schema equality: 1 equals 1.0, true is not 1, objects compare
  unordered) and the items are counted in a set.
- `unevaluatedItems` and `unevaluatedProperties`: each item or key is looked up in a *list*
  of those evaluated. Here the list is made a set first; what is evaluated is found by
  jsonschema's own walk, which is linear in the event.

And one that raised instead of answering: `multipleOf` with a fractional divisor divides the
instance as a float, which an integer past 1e308 cannot be (OverflowError: a 500 for a bad
event). Here that case is decided exactly (fractions), as jsonschema does past its float.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema._utils import (  # the walks unevaluated* rely on (jsonschema >= 4.0)
    extras_msg,
    find_evaluated_item_indexes_by_schema,
    find_evaluated_property_keys_by_schema,
)

__all__ = ["LINEAR_KEYWORDS"]

_MULTIPLE_OF = Draft202012Validator.VALIDATORS["multipleOf"]


def _canonical(value: Any) -> Any:
    """A hashable form of a JSON value, equal for values JSON Schema calls equal."""
    if value is True or value is False:  # before numbers: True == 1 in Python, not in JSON
        return ("boolean", value)
    if isinstance(value, list):
        return ("array", tuple(_canonical(item) for item in value))
    if isinstance(value, dict):
        return ("object", frozenset((k, _canonical(v)) for k, v in value.items()))
    return value  # str, int, float (1 == 1.0, hashed alike), None


def _unique_items(
    validator: Any, unique: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for item in instance:
        form = _canonical(item)
        if form in seen:
            yield ValidationError(f"{instance!r:.200} has non-unique elements")
            return
        seen.add(form)


def _unevaluated_items(
    validator: Any, unevaluated: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "array"):
        return
    evaluated = set(find_evaluated_item_indexes_by_schema(validator, instance, schema))
    extras = [item for index, item in enumerate(instance) if index not in evaluated]
    if extras:
        listed, verb = extras_msg(extras[:20])
        yield ValidationError(
            f"Unevaluated items are not allowed ({listed:.400} {verb} unexpected)"
        )


def _unevaluated_properties(
    validator: Any, unevaluated: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    evaluated = set(find_evaluated_property_keys_by_schema(validator, instance, schema))
    refused = [
        key
        for key, value in instance.items()
        if key not in evaluated
        and next(validator.descend(value, unevaluated, path=key, schema_path=key), None) is not None
    ]
    if not refused:
        return
    if unevaluated is False:
        listed, verb = extras_msg(sorted(refused, key=str)[:20])
        yield ValidationError(
            f"Unevaluated properties are not allowed ({listed:.400} {verb} unexpected)"
        )
    else:
        listed, verb = extras_msg(refused[:20])
        yield ValidationError(
            "Unevaluated properties are not valid under the given schema "
            f"({listed:.400} {verb} unevaluated and invalid)"
        )


def _multiple_of(
    validator: Any, divisor: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if (
        isinstance(divisor, float)
        and type(instance) is int
        and validator.is_type(instance, "number")
    ):
        try:
            float(instance)
        except OverflowError:  # past a float: exactly, as jsonschema does past its own float
            if (Fraction(instance) / Fraction(divisor)).denominator != 1:
                yield ValidationError(f"{instance!r:.80} is not a multiple of {divisor}")
            return
    yield from _MULTIPLE_OF(validator, divisor, instance, schema)


#: The keywords above, by name, for `jsonschema.validators.extend`.
LINEAR_KEYWORDS = {
    "uniqueItems": _unique_items,
    "unevaluatedItems": _unevaluated_items,
    "unevaluatedProperties": _unevaluated_properties,
    "multipleOf": _multiple_of,
}
