"""A queue on a real SQLite file, an audit sink that keeps what it is given, and a queued
invocation's record."""

from __future__ import annotations

from pathlib import Path

from donjon.audit import AuditEvent
from donjon.store import connect, create_schema
from donjon.triggers.envelope import Envelope
from donjon.triggers.queue import QueuedInvocation, RetryPolicy, SqlInvocationQueue, Status


class KeptRecords:
    """The records the queue wrote (the node's AuditLog is tested through a real node)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def record(self, event: AuditEvent) -> None:
        self.events.append(event)

    def actions(self) -> list[str]:
        return [e.action for e in self.events]


def sqlite_queue(tmp_path: Path) -> SqlInvocationQueue:
    engine = connect(f"sqlite:///{tmp_path / 'queue.db'}")
    create_schema(engine)
    return SqlInvocationQueue(engine)


def envelope(function: str = "echo", event: bytes = b'{"n": 1}') -> Envelope:
    return Envelope(
        function=function,
        event=event,
        trigger="invoke",
        source=f"/v1/functions/{function}/invoke",
        type="dev.donjon.invoke",
        principal="key:abc",
    )


def queued(
    event: bytes = b"{}", attempts: int = 1, retry: RetryPolicy | None = None, at: float = 0.0
) -> QueuedInvocation:
    """A running invocation of `f`, enqueued `at`, as the queue hands a worker one."""
    return QueuedInvocation(
        id="i",
        function="f",
        trigger="invoke",
        source="/s",
        type="t",
        principal=None,
        delivery_id=None,
        subject=None,
        event=event,
        status=Status.RUNNING,
        attempts=attempts,
        retry=retry or RetryPolicy(),
        enqueued_at=at,
        next_at=at,
        updated_at=at,
    )
