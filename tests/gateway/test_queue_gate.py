"""Every trigger's way into the queue (`node.submit`, `node.submit_all`: storage pushes,
queue and database sources, webhooks, async invokes) refuses while no audit writer runs,
before anything is queued (gateway/deliveries.py, `_gated`): an event queued whose record
then failed would be sent again by its source and queued again each time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from types import SimpleNamespace
from typing import TypeVar

import pytest

from donjon.audit.errors import AuditUnavailable
from donjon.gateway.deliveries import _gated
from donjon.triggers.envelope import Envelope

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
