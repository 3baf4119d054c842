"""An enqueue whose caller is cancelled mid-commit (an SQS or postgres trigger's task
cancelled by its function's redeploy or removal, `triggers/sources.py` `_stop`; a worker's
destination at stop), on the real service, a real SQLite queue and a real journal of
calls in flight.

The commit runs in a thread, which a cancellation does not stop: the row is stored and
runs. Before, the caller's cancellation dropped the rest of the enqueue: no
`invocation.enqueue` record while the node ran (none at all if the row ran and was
pruned before the next start: its note still said "before the commit"), and its note
and its count among MAX_NOTED kept for the node's life, so that enough of them refuse
every tenant's async calls. Now the enqueue runs to its end whatever becomes of its
caller: the record appended, the note ended."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from donjon.audit.inflight import CallsInFlight, read_slots
from donjon.triggers.queue import AsyncInvocations, FunctionPolicy, RetryPolicy
from queue_support import KeptRecords, envelope, sqlite_queue

POLICY = FunctionPolicy(RetryPolicy(attempts=1, backoff_s=1.0, max_age_s=3600), queued=100)


def _held(service: AsyncInvocations) -> tuple[threading.Event, threading.Event]:
    """The queue's writes held in their thread until the second event is set; the first
    is set once one has begun."""
    queue: Any = service.queue
    real_run = queue._run
    begun, go = threading.Event(), threading.Event()

    async def held_run(fn: Any, *args: Any) -> Any:
        def held(*inner: Any) -> Any:
            begun.set()
            go.wait(10)
            return fn(*inner)

        return await real_run(held, *args)

    queue._run = held_run
    return begun, go


async def _cancelled_mid_commit(service: AsyncInvocations, batch: bool) -> None:
    begun, go = _held(service)
    caller: asyncio.Task[Any] = asyncio.create_task(
        service.submit_all([envelope("sqs")] * 3) if batch else service.enqueue(envelope("sqs"))
    )
    await asyncio.to_thread(begun.wait, 10)
    caller.cancel()  # (the trigger's task, cancelled by its function's redeploy)
    with pytest.raises(asyncio.CancelledError):
        await caller
    go.set()
    for _ in range(1000):  # the thread's commit goes on: until its row is stored
        if await service.pending("sqs"):
            break
        await asyncio.sleep(0.01)
    for _ in range(100):  # and what follows it, if anything does
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("batch", [False, True])
def test_a_cancelled_enqueue_is_recorded_and_its_note_ended(tmp_path: Path, batch: bool) -> None:
    audit = KeptRecords()
    service = AsyncInvocations(sqlite_queue(tmp_path), audit, lambda name: POLICY)
    journal = CallsInFlight(tmp_path / "calls-in-flight")
    service.notes.journal = journal
    asyncio.run(_cancelled_mid_commit(service, batch))
    stored = asyncio.run(service.pending("sqs"))["sqs"]
    assert stored == (3 if batch else 1)  # the rows run
    recorded = [e for e in audit.events if e.action == "invocation.enqueue"]
    assert len(recorded) == stored  # each with its record, now
    assert read_slots(tmp_path / "calls-in-flight") == []  # no note left
    assert journal.in_flight() == 0
    assert service.notes.noted == 0  # nothing taken from MAX_NOTED for the node's life
    journal.close()
