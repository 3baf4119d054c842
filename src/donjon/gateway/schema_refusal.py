"""What a refusal of an event by a function's input_schema names: the first failing field
as a JSON pointer (RFC 6901), bounded, and the schema's keyword (gateway/events.py decides
when to ask; gateway/large_events.py asks it in a child process too). Imports nothing of
the node, so that child loads only this.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, cast

from donjon.gateway.errors import InvalidInput
from donjon.manifest.input_validator import InputValidator

__all__ = ["json_pointer", "refuse_invalid"]

#: The longest pointer a refusal names (the node logs refusals of SQS and NOTIFY events).
_MAX_POINTER = 256
#: The most schema errors an event's check makes before it names the first of them.
_MAX_ERRORS = 32


def json_pointer(path: Any) -> str:
    """The RFC 6901 pointer of a path of keys and indexes ("" is the whole document)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def refuse_invalid(event: Any, validator: InputValidator, name: str) -> None:
    """`InvalidInput` (422) naming the first failing field if `event` does not match the
    schema `validator` checks of function `name` (`validate` past its quick check)."""
    # The first few errors, not all: an event of 200,000 wrong items made as many (~640 MB,
    # seconds on the event loop) to name one. The one named is the first by path of those.
    found = islice(validator.iter_errors(event), _MAX_ERRORS)
    errors = sorted(found, key=lambda err: list(err.path))
    if not errors:
        return
    first = errors[0]
    path = list(first.path)
    if first.validator == "required" and isinstance(first.instance, dict):
        # The field that fails is the one missing, not the object that lacks it (`required`
        # is a list of names: the schema was checked at deploy).
        required = cast(list[str], first.validator_value)
        missing = [key for key in required if key not in first.instance]
        if missing:
            path.append(missing[0])
    pointer = _bounded(json_pointer(path))
    # What the node logs or stores of the refusal: a key the schema does not name (a
    # map's key, under additionalProperties or patternProperties) is the sender's value.
    named = _named(validator.schema)
    field = _bounded(json_pointer(p if isinstance(p, int) or p in named else "*" for p in path))
    raise InvalidInput(
        f"input does not match the function's schema at {pointer or '(root)'}: "
        f"{first.message[:512]}",
        hint=f"send an event that matches the input_schema of {name}",
        field=field or "(root)",
        rule=str(first.validator)[:64],
    )


def _bounded(pointer: str) -> str:
    if len(pointer) > _MAX_POINTER:  # a key is the sender's: its name may be the whole body
        return pointer[:_MAX_POINTER] + "..."
    return pointer


def _named(schema: Any) -> set[str]:
    """The property names `schema` declares (`properties`, `required`), at any depth."""
    names: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            declared = node.get("properties")
            if isinstance(declared, dict):
                names.update(k for k in declared if isinstance(k, str))
            required = node.get("required")
            if isinstance(required, list):
                names.update(k for k in required if isinstance(k, str))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names
