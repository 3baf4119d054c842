"""A call's event at the gateway: its size (the function's `limits.body`) and its shape
(the function's `input_schema`), decided before any sandbox is touched.

Every way in reads its event through here: the invoke API, http triggers, the
Lambda Invoke API and `context.invoke`. The body limit is the function's
`limits.body` (1 MiB unless it says otherwise), never more than the node's
DONJON_MAX_BODY_BYTES. A declared Content-Length over it is refused before
anything is read (and before the call spends any of its limits); a chunked body
is refused as soon as what arrived passes it, without buffering past it.

A function that declares an `input_schema` gets only events that match it: a
body that is not JSON is a 400, one the schema refuses a 422 naming the failing
field as a JSON pointer (RFC 6901). For an http trigger, the schema describes the
request's body: it must be JSON and match (an empty body is ``{}``), and the
function still receives the whole http event.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from starlette.requests import Request

from donjon import boundedjson
from donjon.gateway.access import header, read_body
from donjon.gateway.errors import InvalidInput, PayloadTooLarge
from donjon.lifecycle import Deployed
from donjon.manifest.sizes import format_size

__all__ = [
    "body_limit",
    "check_event_size",
    "json_pointer",
    "read_event",
    "refuse_declared",
    "validate",
]


#: The longest pointer a refusal names (the node logs refusals of SQS and NOTIFY events).
_MAX_POINTER = 256
#: The most schema errors an event's check makes before it names the first of them.
_MAX_ERRORS = 32


def body_limit(deployed: Deployed, node_max: int) -> int:
    """The most bytes of event a call of `deployed` takes: its `limits.body`, at most `node_max`."""
    return min(deployed.manifest.limits.body_bytes, node_max)


def _too_large(deployed: Deployed, limit: int, size: int | None = None) -> PayloadTooLarge:
    got = f" ({size} bytes)" if size is not None else ""
    return PayloadTooLarge(
        f"the request body{got} is over the limit of function {deployed.name}: "
        f"{format_size(limit)} ({limit} bytes)",
        hint="send a smaller event, or raise limits.body in the function's manifest "
        "(up to the node's DONJON_MAX_BODY_BYTES)",
    )


def refuse_declared(request: Request, deployed: Deployed, limit: int) -> None:
    """`PayloadTooLarge` if the request's Content-Length says more than `limit`: nothing read."""
    declared = header(request, b"content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(deployed, limit, int(declared))


async def read_event(
    request: Request, deployed: Deployed, limit: int, *, declared_checked: bool = False
) -> bytes:
    """The request's body, refused (413) once it passes `limit`, declared or as it arrives
    (`declared_checked`: the caller has already called `refuse_declared`)."""
    if not declared_checked:
        refuse_declared(request, deployed, limit)
    try:
        return await read_body(request, limit, check_declared=not declared_checked)
    except PayloadTooLarge:
        raise _too_large(deployed, limit) from None


def check_event_size(event: bytes, deployed: Deployed, limit: int) -> None:
    """`PayloadTooLarge` if an event already read (a signed body, a `context.invoke` event)
    is over `limit`."""
    if len(event) > limit:
        raise _too_large(deployed, limit, len(event))


def json_pointer(path: Any) -> str:
    """The RFC 6901 pointer of a path of keys and indexes ("" is the whole document)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def validate(event: Any, deployed: Deployed) -> None:
    """`InvalidInput` (422) naming the first failing field if `event` does not match the
    function's input_schema; nothing if it declares none."""
    validator = deployed.validator
    if validator is None:
        return
    quick = validator.quick
    if quick is not None and quick(event):  # plainly valid: what `iter_errors` says at once
        return
    # The first few errors, not all: an event of 200,000 wrong items made as many (~640 MB,
    # seconds on the event loop) to name one. The one named is the first by path of those.
    found = islice(validator.iter_errors(event), _MAX_ERRORS)
    errors = sorted(found, key=lambda err: list(err.path))
    if not errors:
        return
    first = errors[0]
    path = list(first.path)
    if first.validator == "required" and isinstance(first.instance, dict):
        # The field that fails is the one missing, not the object that lacks it.
        missing = [name for name in first.validator_value if name not in first.instance]
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
        hint=f"send an event that matches the input_schema of {deployed.name}",
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


def validate_made(event: bytes, deployed: Deployed) -> None:
    """`validate` for an event the node made whole (an event source's record, a webhook's
    delivery, a pushed notification's record, a queued event at its delivery): the JSON the
    handler will be given. A NaN, Infinity or number past a float in it is refused (422):
    JSON has none, and NaN would pass every numeric bound of the schema."""
    if deployed.validator is None:
        return
    try:
        parsed = boundedjson.loads(event, finite=True)
    except ValueError as e:  # JSONTooDeep (an Error: 400) goes through as it is
        raise InvalidInput(
            f"the event is not JSON the function's schema can check: {str(e)[:200]}",
            hint=f"send an event that matches the input_schema of {deployed.name}",
        ) from None
    validate(parsed, deployed)
