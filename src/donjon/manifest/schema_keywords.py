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

And the two that gather every error of each branch they try (`anyOf`, `oneOf`: jsonschema
keeps them as the error's context): an array of 200,000 wrong items inside `anyOf` made as
many errors (~640 MB, seconds). Here each branch is asked for its first few only (the
context is never shown whole: gateway/events.py names one field); what they decide is the
same, since a branch fails as soon as it has one error.

And one that raised instead of answering: `multipleOf` with a fractional divisor divides the
instance as a float, which an integer past 1e308 cannot be (OverflowError: a 500 for a bad
event). Here that case is decided exactly (fractions), as jsonschema does past its float.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from itertools import islice
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema._utils import (  # the walks unevaluated* rely on (jsonschema >= 4.0)
    extras_msg,
    find_evaluated_item_indexes_by_schema,
    find_evaluated_property_keys_by_schema,
)

__all__ = ["LINEAR_KEYWORDS"]

_MULTIPLE_OF = Draft202012Validator.VALIDATORS["multipleOf"]
#: The most errors of one `anyOf` / `oneOf` branch kept as the refusal's context.
MAX_CONTEXT = 8


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


def _failed_branches(
    validator: Any, branches: Any, instance: Any
) -> tuple[list[ValidationError], Any, Iterator[tuple[int, Any]]]:
    """The first errors of each branch that fails, up to the first that passes (None if
    none does), and the branches not tried yet."""
    remaining = enumerate(branches)
    context: list[ValidationError] = []
    for index, branch in remaining:
        errors = list(islice(validator.descend(instance, branch, schema_path=index), MAX_CONTEXT))
        if not errors:
            return context, branch, remaining
        context.extend(errors)
    return context, None, remaining


def _any_of(validator: Any, any_of: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    context, passed, _ = _failed_branches(validator, any_of, instance)
    if passed is None:
        yield ValidationError(
            f"{instance!r:.400} is not valid under any of the given schemas", context=context
        )


def _one_of(validator: Any, one_of: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    context, passed, remaining = _failed_branches(validator, one_of, instance)
    if passed is None:
        yield ValidationError(
            f"{instance!r:.400} is not valid under any of the given schemas", context=context
        )
        return
    more = [each for _, each in remaining if validator.evolve(schema=each).is_valid(instance)]
    if more:
        more.append(passed)
        listed = ", ".join(repr(each) for each in more)
        yield ValidationError(f"{instance!r:.400} is valid under each of {listed:.400}")


#: The keywords above, by name, for `jsonschema.validators.extend`.
LINEAR_KEYWORDS = {
    "uniqueItems": _unique_items,
    "unevaluatedItems": _unevaluated_items,
    "unevaluatedProperties": _unevaluated_properties,
    "multipleOf": _multiple_of,
    "anyOf": _any_of,
    "oneOf": _one_of,
}
