"""What every event trigger hands the platform: one event for one function.

Webhooks, storage events (S3 through SQS or pushed), database events (PostgreSQL
LISTEN) and async invokes all make an `Envelope` and pass it to a `Submit`; the
node runs it as an invocation with the function's controls (quarantine, limits,
quotas, capacity, sandbox, audit). The envelope carries what the CloudEvents 1.0
context attributes need (`source`, `type`, `subject`, and the scheme's delivery id
for `id`), so a handler sees the same attributes whatever the trigger.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

__all__ = ["TRIGGER_KINDS", "Check", "Envelope", "Submit", "SubmitAll"]

#: The trigger kinds an envelope may come from (the audit records' `trigger`).
TRIGGER_KINDS = frozenset({"invoke", "webhook", "s3", "postgres", "schedule"})


@dataclass(frozen=True)
class Envelope:
    """One event for one function, before it runs."""

    #: The deployed function to run.
    function: str
    #: The handler's event, as JSON bytes.
    event: bytes
    #: Where it came from: one of TRIGGER_KINDS.
    trigger: str
    #: CloudEvents `source`: a URI reference naming the producer, such as
    #: ``/hooks/github``, ``s3://photos`` or ``postgres://orders``.
    source: str
    #: CloudEvents `type`, such as ``com.github.push`` or ``com.amazonaws.s3.ObjectCreated:Put``.
    type: str
    #: The principal id of the caller (async invokes); None for events from a source.
    principal: str | None = None
    #: A token caller's roles, as its token granted them (its deliveries are held to their
    #: limits and quotas); () for a key (its role is read again) or a source.
    roles: tuple[str, ...] = ()
    #: A token caller's: the kid of its issuer's key that signed the token (its deliveries
    #: stop once the issuer withdraws that key); None for a key, a source, or an event
    #: queued before it was kept.
    signed_by: str | None = None
    #: The fingerprint of that key (identity/jwks.py `TrustedKey`): its deliveries stop
    #: once the issuer's key under that kid is another; None as for `signed_by`, or for an
    #: event queued before it was kept.
    signed_key: str | None = None
    #: The producer's own id for this delivery (``X-GitHub-Delivery``, ``webhook-id``,
    #: the S3 record's ``sequencer``...); None when the producer has none.
    delivery_id: str | None = None
    #: CloudEvents `subject`, such as the object key of a storage event.
    subject: str | None = None
    #: The request that brought it passed the function's admission just now (an async
    #: invoke, a webhook): its rate buckets and quotas are spent, and stand for the first
    #: attempt's; False (a source without an edge, such as SQS or NOTIFY): the first
    #: attempt spends them.
    admitted: bool = False
    #: The HTTP request that queued it (an async invoke: its 202's request id) and the
    #: caller's address, for its `invocation.enqueue` record only (not stored with it).
    request_id: str | None = None
    client: str | None = None

    def __post_init__(self) -> None:
        if self.trigger not in TRIGGER_KINDS:
            raise ValueError(f"unknown trigger kind {self.trigger!r}")


#: Hands an envelope to the node; returns the invocation id it will run under.
#: Raises donjon.errors.Error (e.g. an unknown function, limits) when it cannot take it.
Submit = Callable[[Envelope], Awaitable[str]]
#: Hands the envelopes of one function (the records of one message) to the node, all or
#: none: their invocation ids, or an Error (such as the function's queue being full:
#: `QueueFull`) with none of them taken.
SubmitAll = Callable[[Sequence[Envelope]], Awaitable[list[str]]]
#: Raises donjon.errors.Error if the node would refuse the envelope for what it holds
#: (over the function's body limit, refused by its input_schema); `Submit` checks the
#: same. A source checks every envelope of a message first, so that one refused record
#: does not leave the records before it submitted, to run again at each redelivery.
#: Awaited: the node checks a large event in a child process (gateway/large_events.py).
Check = Callable[[Envelope], Awaitable[None]]
