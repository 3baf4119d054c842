"""Every trigger's way into the queue (`node.submit`, `node.submit_all`: storage pushes,
queue and database sources, webhooks, async invokes) refuses while no audit writer runs,
before anything is queued (gateway/deliveries.py, `_gated`): an event queued whose record
then failed would be sent again by its source and queued again each time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Sequence
from types import SimpleNamespace
from typing import TypeVar

import pytest

from donjon.audit.errors import AuditUnavailable
from donjon.audit.remote import GIVEN_UP_RETRY_S
from donjon.gateway.deliveries import _failure, _gated
from donjon.gateway.errors import NotFound
from donjon.triggers.envelope import Envelope
from donjon.triggers.queue import RetryPolicy
from donjon.triggers.queue.retry import next_attempt, throttled

EVENT = Envelope("f", b"{}", "s3", "s3://photos", "com.amazonaws.s3.ObjectCreated:Put")


T = TypeVar("T")


def run(awaitable: Awaitable[T]) -> T:
    async def wait() -> T:
        return await awaitable

    return asyncio.run(wait())


class Writer:
    """The node's audit log as far as the gate asks it: is a writer running?"""

    def __init__(self) -> None:
        self.down = False

    def require_writer(self) -> None:
        if self.down:
            raise AuditUnavailable("the audit log is unavailable")


def test_nothing_is_queued_while_no_audit_writer_runs() -> None:
    writer = Writer()
    queued: list[str] = []

    async def submit(envelope: Envelope) -> str:
        queued.append(envelope.function)
        return "inv-1"

    async def submit_all(envelopes: Sequence[Envelope]) -> list[str]:
        queued.extend(e.function for e in envelopes)
        return ["inv-1"] * len(envelopes)

    gated, gated_all = _gated(SimpleNamespace(audit=writer), submit, submit_all)  # type: ignore[arg-type]  # the node's audit alone
    assert run(gated(EVENT)) == "inv-1"
    assert run(gated_all([EVENT, EVENT])) == ["inv-1", "inv-1"]
    writer.down = True
    with pytest.raises(AuditUnavailable):
        run(gated(EVENT))
    with pytest.raises(AuditUnavailable):
        run(gated_all([EVENT]))
    assert queued == ["f", "f", "f"]


def test_a_delivery_refused_for_the_audit_writer_waits_for_its_retry_after() -> None:
    """A delivery refused because no audit writer runs never ran: its attempt is given
    back, and the next one waits for the refusal's Retry-After (30 s once the writer's
    restarts were given up), not the retry policy's first backoff of about a second."""
    error = AuditUnavailable("the audit log is unavailable")
    error.retry_after_s = GIVEN_UP_RETRY_S
    outcome = _failure(error, "req-1", ran=False)
    assert (outcome.status, outcome.ran, outcome.retry_after_s) == (503, False, 30.0)
    assert throttled(outcome)
    invocation = SimpleNamespace(
        enqueued_at=1000.0, attempts=1, retry=RetryPolicy(attempts=3, backoff_s=1, max_age_s=3600)
    )
    rng = random.Random(1)  # noqa: S311 - seeded for a repeatable test, not a secret
    due = next_attempt(invocation, outcome, 1000.0, rng)  # type: ignore[arg-type]  # what next_attempt reads
    assert due == 1030.0
    # A refusal with no Retry-After of its own keeps the policy's backoff.
    plain = _failure(NotFound("no function named 'f'"), "req-2", ran=False)
    assert plain.retry_after_s is None
