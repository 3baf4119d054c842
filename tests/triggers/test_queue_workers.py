"""The queue's workers over a real SQLite queue, with scripted deliveries: retries to
success, dead-lettering, destinations, bounded concurrency, expired last leases, stop."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from donjon.triggers.queue import (
    AsyncInvocations,
    FunctionPolicy,
    Outcome,
    QueuedInvocation,
    QueueWorkers,
    RetryPolicy,
    SqlInvocationQueue,
    Status,
    UnknownFunction,
)
from queue_support import KeptRecords, envelope, sqlite_queue

FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_age_s=3600)

Script = Callable[[QueuedInvocation], Awaitable[Outcome]]


def _service(
    queue: SqlInvocationQueue, records: KeptRecords, policies: dict[str, FunctionPolicy]
) -> AsyncInvocations:
    return AsyncInvocations(queue, records, policies.get)


def _workers(
    service: AsyncInvocations, deliver: Script, records: KeptRecords, n: int = 4
) -> QueueWorkers:
    return QueueWorkers(service, deliver, records, workers=n, lease_s=30, poll_s=0.05)


async def _until(
    queue: SqlInvocationQueue, invocation_id: str, *states: Status
) -> QueuedInvocation:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = await queue.get(invocation_id)
        if found is not None and found.status in states:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"{invocation_id} never reached {states}")


def test_failing_delivery_is_retried_until_it_succeeds(tmp_path: Path) -> None:
    """Two retryable failures, then success: succeeded after 3 attempts, each audited."""
    calls: list[int] = []

    async def deliver(inv: QueuedInvocation) -> Outcome:
        calls.append(inv.attempts)
        if len(calls) < 3:
            return Outcome(False, f"r{len(calls)}", status=500, error_type="Boom", error="no")
        return Outcome(True, "r3", result=b'{"ok": true}')

    async def go() -> None:
        records = KeptRecords()
        queue = sqlite_queue(tmp_path)
        service = _service(queue, records, {"echo": FunctionPolicy(FAST)})
        workers = _workers(service, deliver, records)
        workers.start()
        try:
            queued = await service.enqueue(envelope())
            done = await _until(queue, queued.id, Status.SUCCEEDED, Status.DEAD)
        finally:
            await workers.stop()
        assert done.status is Status.SUCCEEDED
        assert done.attempts == 3
        assert done.result == b'{"ok": true}'
        assert done.request_id == "r3"
        assert calls == [1, 2, 3]
        attempts = [e for e in records.events if e.action == "invocation.attempt"]
        assert [a.detail["state"] for a in attempts] == ["failed", "failed", "succeeded"]
        assert records.actions()[0] == "invocation.enqueue"
        assert all("event" not in e.detail for e in records.events)

    asyncio.run(go())


def test_delivery_that_always_fails_is_dead_lettered_and_sent_to_on_failure(
    tmp_path: Path,
) -> None:
    """After its last attempt the event is dead; on_failure gets Lambda's record shape."""
    seen: dict[str, list[QueuedInvocation]] = {"echo": [], "alert": []}

    async def deliver(inv: QueuedInvocation) -> Outcome:
        seen[inv.function].append(inv)
        if inv.function == "alert":
            return Outcome(True, "ra", result=b"null")
        return Outcome(False, "r", status=504, error_type="Function.Timeout", error="slow")

    async def go() -> None:
        records = KeptRecords()
        queue = sqlite_queue(tmp_path)
        policies = {
            "echo": FunctionPolicy(FAST, on_failure="alert"),
            "alert": FunctionPolicy(FAST),
        }
        service = _service(queue, records, policies)
        workers = _workers(service, deliver, records)
        workers.start()
        try:
            queued = await service.enqueue(envelope(event=b'{"order": 7}'))
            dead = await _until(queue, queued.id, Status.DEAD)
            deadline = time.monotonic() + 20
            while not seen["alert"] and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            await workers.stop()
        assert dead.attempts == 3
        assert dead.error_type == "Function.Timeout"
        assert [d.id for d in await queue.dead("echo", 10)] == [queued.id]
        assert "invocation.dead" in records.actions()
        (destination,) = seen["alert"]
        record = json.loads(destination.event)
        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert record["requestContext"]["approximateInvokeCount"] == 3
        assert record["requestContext"]["requestId"] == queued.id
        assert record["requestPayload"] == {"order": 7}
        assert record["responsePayload"]["errorType"] == "Function.Timeout"
        assert destination.subject == queued.id

    asyncio.run(go())


def test_bad_event_is_dead_after_one_attempt(tmp_path: Path) -> None:
    """A 422 (the schema refuses the event) is never retried."""
    calls: list[str] = []

    async def deliver(inv: QueuedInvocation) -> Outcome:
        calls.append(inv.id)
        return Outcome(False, "r", status=422, error_type="InvalidInput", error="no")

    async def go() -> None:
        records = KeptRecords()
        queue = sqlite_queue(tmp_path)
        service = _service(queue, records, {"echo": FunctionPolicy(FAST)})
        workers = _workers(service, deliver, records)
        workers.start()
        try:
            queued = await service.enqueue(envelope())
            dead = await _until(queue, queued.id, Status.DEAD)
        finally:
            await workers.stop()
        assert dead.attempts == 1
        assert calls == [queued.id]

    asyncio.run(go())


def test_no_more_deliveries_run_at_once_than_workers(tmp_path: Path) -> None:
    """With 2 workers, never more than 2 deliveries are in flight."""
    running = 0
    most = 0

    async def deliver(inv: QueuedInvocation) -> Outcome:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        return Outcome(True, "r", result=b"1")

    async def go() -> None:
        records = KeptRecords()
        queue = sqlite_queue(tmp_path)
        service = _service(queue, records, {"echo": FunctionPolicy(FAST)})
        workers = _workers(service, deliver, records, n=2)
        workers.start()
        try:
            ids = [(await service.enqueue(envelope())).id for _ in range(8)]
            for invocation_id in ids:
                await _until(queue, invocation_id, Status.SUCCEEDED)
        finally:
            await workers.stop()
        assert most == 2

    asyncio.run(go())


def test_expired_lease_of_the_last_attempt_is_dead_lettered(tmp_path: Path) -> None:
    """A node died during the last attempt: the re-claim dead-letters it, without a rerun."""
    calls: list[str] = []

    async def deliver(inv: QueuedInvocation) -> Outcome:
        calls.append(inv.id)
        return Outcome(True, "r", result=b"1")

    async def go() -> None:
        records = KeptRecords()
        queue = sqlite_queue(tmp_path)
        once = RetryPolicy(attempts=1, backoff_s=0.01)
        service = _service(queue, records, {"echo": FunctionPolicy(once)})
        queued = await service.enqueue(envelope())
        (lease,) = await queue.claim(1, 0.1)  # the node that died
        assert lease.invocation.attempts == 1
        await asyncio.sleep(0.2)
        workers = _workers(service, deliver, records)
        workers.start()
        try:
            dead = await _until(queue, queued.id, Status.DEAD)
        finally:
            await workers.stop()
        assert dead.error_type == "LeaseExpired"
        assert calls == []

    asyncio.run(go())


def test_call_ended_by_a_stopping_node_is_queued_again_uncharged(tmp_path: Path) -> None:
    """Past the grace period the node ends the call: the event waits for the next start."""
    started = asyncio.Event()
    ended = asyncio.Event()

    async def deliver(inv: QueuedInvocation) -> Outcome:
        started.set()
        await ended.wait()
        return Outcome(False, "r", status=503, error_type="SandboxError", error="stopping")

    async def end_calls() -> None:
        ended.set()

    async def go() -> None:
        records = KeptRecords()
        queue = sqlite_queue(tmp_path)
        service = _service(queue, records, {"echo": FunctionPolicy(FAST)})
        workers = _workers(service, deliver, records)
        workers.start()
        queued = await service.enqueue(envelope())
        await asyncio.wait_for(started.wait(), 20)
        await workers.stop(0.0, end_calls)
        found = await queue.get(queued.id)
        assert found is not None
        assert found.status is Status.FAILED
        assert found.attempts == 0
        assert found.error_type == "NodeStopping"

    asyncio.run(go())


def test_unknown_function_is_refused_at_enqueue(tmp_path: Path) -> None:
    """An event for a function that is not deployed is refused and nothing is queued."""

    async def go() -> None:
        records = KeptRecords()
        queue = sqlite_queue(tmp_path)
        service = _service(queue, records, {})
        with pytest.raises(UnknownFunction):
            await service.enqueue(envelope("ghost"))
        assert records.events == []
        assert await queue.claim(10, 30) == []

    asyncio.run(go())


def test_an_enqueue_record_keeps_a_digest_of_the_delivery_id(tmp_path: Path) -> None:
    """An S3 record's delivery id holds its object key: the audit record keeps its SHA-256
    (which matches the known id), the invocation keeps the id itself."""
    key_id = "photos/in/jane.doe@example.com.pdf/0055AED6DCD90281E5"

    async def go() -> None:
        records = KeptRecords()
        queue = sqlite_queue(tmp_path)
        service = _service(queue, records, {"echo": FunctionPolicy(FAST)})
        queued = await service.enqueue(dataclasses.replace(envelope(), delivery_id=key_id))
        (enqueued,) = [e for e in records.events if e.action == "invocation.enqueue"]
        assert "jane.doe" not in json.dumps(enqueued.detail)
        digest = hashlib.sha256(key_id.encode()).hexdigest()[:32]
        assert enqueued.detail["delivery_sha256"] == digest
        kept = await queue.get(queued.id)
        assert kept is not None and kept.delivery_id == key_id

    asyncio.run(go())


def test_a_functions_backlog_does_not_hold_another_functions_events_behind_it(
    tmp_path: Path,
) -> None:
    """One function floods the node's queue with slow events (a tenant filling its own SQS
    queue, NOTIFYing in a loop, or queueing async calls within its rates): the workers
    are shared, and they took due events oldest first, so another function's event
    waited behind the whole backlog (with 10,000 of 10 s each and 4 workers, hours: past
    its max_age_s, dead-lettered without running). A freed worker now takes first the
    events of the functions with the fewest calls running on the node."""
    started: list[str] = []
    go_on = asyncio.Semaphore(0)  # one release: one of the flood's calls ends

    async def deliver(inv: QueuedInvocation) -> Outcome:
        started.append(inv.function)
        if inv.function == "flood":
            await go_on.acquire()
        return Outcome(True, "r", result=b"1")

    async def until_started(n: int) -> None:
        deadline = time.monotonic() + 20
        while len(started) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {started} started")
            await asyncio.sleep(0.01)

    async def go() -> None:
        records = KeptRecords()
        queue = sqlite_queue(tmp_path)
        policies = {"flood": FunctionPolicy(FAST), "victim": FunctionPolicy(FAST)}
        service = _service(queue, records, policies)
        for _ in range(20):
            await service.enqueue(envelope("flood"))
        workers = _workers(service, deliver, records, n=2)
        workers.start()
        try:
            await until_started(2)  # both workers hold one of the flood's calls
            victim = await service.enqueue(envelope("victim"))
            go_on.release()  # one of them ends: a worker is free
            await until_started(3)
            assert started[2] == "victim"  # not the flood's third, of 18 still due
            await _until(queue, victim.id, Status.SUCCEEDED)
        finally:
            for _ in range(20):
                go_on.release()
            await workers.stop()

    asyncio.run(go())
