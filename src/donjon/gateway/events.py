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

import functools
from collections.abc import Awaitable, Sequence
from typing import Any, NoReturn

from starlette.requests import Request

from donjon import boundedjson
from donjon.gateway.access import deny, header, not_json, parse_json, read_body
from donjon.gateway.errors import BadRequest, InvalidInput, PayloadTooLarge
from donjon.gateway.large_events import ON_LOOP_BYTES, PAST_LOOP, Refusal
from donjon.gateway.node import Node
from donjon.gateway.schema_refusal import json_pointer, refuse_invalid
from donjon.lifecycle import Deployed
from donjon.manifest.sizes import format_size

__all__ = [
    "body_limit",
    "check_event",
    "check_event_size",
    "check_large",
    "check_made",
    "json_pointer",
    "read_event",
    "refuse_declared",
    "validate",
]


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


def read_event(
    request: Request, deployed: Deployed, limit: int, *, declared_checked: bool = False
) -> Awaitable[bytes]:
    """The request's body, refused (413) once it passes `limit`, declared or as it arrives
    (`declared_checked`: the caller has already called `refuse_declared`). No coroutine of
    its own: `read_body`'s, which makes this function's refusal."""
    if not declared_checked:
        refuse_declared(request, deployed, limit)
    return read_body(
        request,
        limit,
        check_declared=not declared_checked,
        too_large=functools.partial(_too_large, deployed, limit),
    )


def check_event_size(event: bytes, deployed: Deployed, limit: int) -> None:
    """`PayloadTooLarge` if an event already read (a signed body, a `context.invoke` event)
    is over `limit`."""
    if len(event) > limit:
        raise _too_large(deployed, limit, len(event))


def validate(event: Any, deployed: Deployed) -> None:
    """`InvalidInput` (422) naming the first failing field if `event` does not match the
    function's input_schema; nothing if it declares none."""
    validator = deployed.validator
    if validator is None:
        return
    quick = validator.quick
    if quick is not None and quick(event):  # plainly valid: what `iter_errors` says at once
        return
    refuse_invalid(event, validator, deployed.name)  # (schema_refusal.py)


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
        raise _not_checkable(str(e), deployed) from None
    validate(parsed, deployed)


def _not_checkable(reason: str, deployed: Deployed) -> InvalidInput:
    return InvalidInput(
        f"the event is not JSON the function's schema can check: {reason[:200]}",
        hint=f"send an event that matches the input_schema of {deployed.name}",
    )


async def check_made(node: Node, caller: str, event: bytes, deployed: Deployed) -> None:
    """`validate_made`: on the loop up to `ON_LOOP_BYTES`, past it in the child
    (large_events.py) for `caller` (whose share of its places it takes), with the same
    refusals."""
    if deployed.validator is None:
        return
    if not event[PAST_LOOP]:
        validate_made(event, deployed)
        return
    refused = await node.large_events.refusal(caller, deployed, event)
    if refused is not None:
        _raise_made(refused, deployed)


async def check_all_made(
    node: Node, caller: str, events: Sequence[bytes], deployed: Deployed
) -> None:
    """`check_made` of each of `events` (one message's records) in order, the first refused
    raising; all in the child once together past `ON_LOOP_BYTES`, though each may be under
    it (a store's push of 120 records of 50 KB held the loop 0.14-0.21 s, one after the
    other)."""
    if deployed.validator is None:
        return
    if sum(map(len, events)) <= ON_LOOP_BYTES:
        for event in events:
            validate_made(event, deployed)
        return
    refused = await node.large_events.first_refusal(caller, deployed, list(events))
    if refused is not None:
        _raise_made(refused, deployed)


def _raise_made(refused: Refusal, deployed: Deployed) -> NoReturn:
    """`validate_made`'s error for what the child refused."""
    refused.raise_schema()
    if refused.kind == "deep":
        raise boundedjson.JSONTooDeep(refused.message, hint=refused.hint)
    raise _not_checkable(refused.message, deployed)


async def check_large(
    node: Node, request: Request, actor: str, deployed: Deployed, event: bytes, request_id: str
) -> None:
    """`parse_json` and `validate` of `event` (past `ON_LOOP_BYTES`) for `deployed`, done in
    the child (large_events.py): the same refusals (a 400, audited if nested too deep; a
    422), raised here."""
    refused = await node.large_events.refusal(actor, deployed, event)
    if refused is None:
        return
    refused.raise_schema()
    if refused.kind == "deep":
        await deny(node, request, actor, "input.refused", refused.message, request_id)
        raise BadRequest(refused.message, hint=refused.hint)
    raise not_json(refused.message)


async def check_event(
    node: Node, request: Request, actor: str, deployed: Deployed, event: bytes, request_id: str
) -> None:
    """`parse_json` and `validate` of `event` for `deployed`: on the loop up to
    `ON_LOOP_BYTES`, past it in the child (`check_large`). (The invoke route does this
    inline: its warm path makes no call more.)"""
    if event[PAST_LOOP]:
        await check_large(node, request, actor, deployed, event, request_id)
        return
    finite = deployed.validator is not None
    validate(await parse_json(node, request, actor, event, request_id, finite=finite), deployed)
