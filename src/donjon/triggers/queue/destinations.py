"""Destinations: the record a function's `on_success` / `on_failure` receives (Lambda's
destination record), and the bound on chains of them.

A destination's outcome goes to its own destinations, so a function naming itself, or a
ring of functions naming each other, made every record the event of the next: one
async call was an endless chain of calls, each event holding the one before it (one
call made ~1,000 calls and ~140 MB of sealed events before the nesting broke the
node's parser). As Lambda stops a recursive loop, a chain ends at
`MAX_DESTINATION_CHAIN` records: the record that would be the next is not queued, and
the worker audits it refused (`invocation.destination`), as it does a full queue's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

from donjon import boundedjson
from donjon.triggers.queue.interface import QueuedInvocation, QueueError
from donjon.triggers.queue.retry import Outcome

__all__ = [
    "DESTINATION_TYPES",
    "MAX_DESTINATION_CHAIN",
    "MAX_RECORD_PAYLOAD",
    "CallerRefused",
    "DestinationChainTooLong",
    "DestinationLapsed",
    "chain_length",
    "check_caller",
    "check_chain",
    "destination_event",
    "destination_record",
    "record_type",
]

#: The most destination records one chain holds (Lambda stops a loop after 16 calls).
MAX_DESTINATION_CHAIN = 16
#: The CloudEvents type of a destination's record: its event was made by the node.
DESTINATION_TYPES = frozenset({"donjon.invocation.success", "donjon.invocation.failure"})

#: The most bytes of an event or a result parsed into a record, on the node's one event
#: loop: a larger one is null there, as one past the destination's body limit is (a 6 MiB
#: result of `[0, 0, ...]` took the loop about 0.5 s per record, every tenant's time).
#: Lambda's asynchronous invocations took payloads of at most 256 KB.
MAX_RECORD_PAYLOAD = 256 * 1024

#: An invocation by id (the queue's `get`), None once it is gone.
Get = Callable[[str], Awaitable[QueuedInvocation | None]]


class DestinationChainTooLong(QueueError):
    """A destination's record that would be the next of a chain already at its bound."""

    title = "Destination chain too long"


class CallerRefused(QueueError):
    """An outcome of a caller no longer allowed (its key revoked, its role denying the
    function): its event goes to no destination."""

    title = "Caller no longer allowed"


#: The statuses of an attempt refused because its caller is no longer allowed (401, 403:
#: gateway/deliveries.py): the event never ran, and its record would give the caller's
#: event to the destination's code after its credential was revoked.
_CALLER_REFUSED = frozenset({401, 403})


def check_caller(invocation: QueuedInvocation, outcome: Outcome, target: str) -> None:
    """`CallerRefused` if `outcome` is its caller's refusal: no record goes to `target`."""
    if not outcome.ok and outcome.status in _CALLER_REFUSED:
        raise CallerRefused(
            f"the caller that queued {invocation.id} is no longer allowed"
            f" ({outcome.error_type}): its event is not sent to {target}",
            hint="its event stays in the dead-letter queue (dlq:manage)",
        )


class DestinationLapsed(QueueError):
    """A destination removed and deployed again since its source's deploy named it."""

    title = "Destination no longer granted"


def record_type(ok: bool) -> str:
    return "donjon.invocation." + ("success" if ok else "failure")


async def chain_length(invocation: QueuedInvocation, get: Get) -> int:
    """How many destination records lead to `invocation` (0: it is not one), counted
    through each record's `subject` (the invocation it reports) up to the bound. A link
    gone (its retention passed, purged) ends the count there."""
    length = 0
    current: QueuedInvocation | None = invocation
    while (
        current is not None
        and length < MAX_DESTINATION_CHAIN
        and current.type in DESTINATION_TYPES
        and current.principal is None
        and current.subject is not None
    ):
        length += 1
        current = await get(current.subject)
    return length


async def check_chain(invocation: QueuedInvocation, target: str, get: Get) -> None:
    """`DestinationChainTooLong` if a record of `invocation`'s outcome to `target` would
    be past the bound."""
    if invocation.type not in DESTINATION_TYPES:
        return  # the common case: no lookup
    if await chain_length(invocation, get) >= MAX_DESTINATION_CHAIN:
        raise DestinationChainTooLong(
            f"{invocation.function} was called by a chain of {MAX_DESTINATION_CHAIN}"
            f" destination records (the most one chain holds): its record to {target}"
            " would be the next",
            hint="a function's destinations lead back to it: name a destination that does not",
        )


def _parsed(raw: bytes, room: int) -> object:
    """An event or a result as JSON, None if it is none, is larger than `room` (unparsed),
    or nests deeper than the node parses (boundedjson): a function's result nested 5,000
    deep raised RecursionError here, its outcome was never recorded, and it ran again at
    each lease's expiry."""
    if len(raw) > room:
        return None
    try:
        return boundedjson.loads(raw)
    except (ValueError, boundedjson.JSONTooDeep):
        return None


def destination_record(
    invocation: QueuedInvocation, outcome: Outcome, room: int = MAX_RECORD_PAYLOAD
) -> dict[str, object]:
    """What a destination function receives: Lambda's destination record shape; an event or
    a result over `room` bytes (at most MAX_RECORD_PAYLOAD) is null, unparsed."""
    room = min(room, MAX_RECORD_PAYLOAD)
    payload = _parsed(invocation.event, room)
    condition = "Success"
    if not outcome.ok:
        condition = (
            "EventAgeExceeded" if outcome.error_type == "EventAgeExceeded" else "RetriesExhausted"
        )
    response: object
    if outcome.ok:
        response = _parsed(outcome.result, room) if outcome.result else None
    else:
        response = {"errorType": outcome.error_type, "errorMessage": outcome.error}
    return {
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "requestContext": {
            "requestId": invocation.id,
            "functionArn": invocation.function,
            "condition": condition,
            "approximateInvokeCount": invocation.attempts,
        },
        "requestPayload": payload,
        "responseContext": {
            "statusCode": outcome.status,
            **({} if outcome.ok else {"functionError": outcome.error_type}),
        },
        "responsePayload": response,
    }


def destination_event(invocation: QueuedInvocation, outcome: Outcome, limit: int | None) -> bytes:
    """The record as the destination's event: at most `limit` bytes (its body limit), its
    payloads null past that, the request's first. In a chain each record's requestPayload
    is the record before it: a ring of functions each returning 700 KB queued records of
    k * 700 KB, past every body limit (~95 MB from one call over 16 links). A payload
    larger than `limit` alone is not parsed: it could not be in the record."""
    record = destination_record(invocation, outcome, MAX_RECORD_PAYLOAD if limit is None else limit)
    event = json.dumps(record).encode()
    for payload in ("requestPayload", "responsePayload"):
        if limit is None or len(event) <= limit:
            break
        record[payload] = None
        event = json.dumps(record).encode()
    return event
