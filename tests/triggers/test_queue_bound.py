"""The bound on a function's pending async invocations (`limits.queued`) on a real SQLite
file: refused past it with nothing stored, batches all or none, concurrent enqueues never
over it, finished and dead-lettered invocations not counted, redrive bounded too."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from donjon.triggers.envelope import Envelope
from donjon.triggers.queue import (
    AsyncInvocations,
    FunctionPolicy,
    QueueFull,
    RetryPolicy,
    SqlInvocationQueue,
    Status,
)
from queue_support import KeptRecords, envelope, sqlite_queue

POLICY = RetryPolicy(attempts=1, backoff_s=1.0, max_age_s=3600)


def test_enqueue_past_the_bound_is_refused_and_stores_nothing(tmp_path: Path) -> None:
    """Three of a bound of three are taken; the fourth raises QueueFull and is not stored;
    another function's queue is its own."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        for n in range(3):
            await queue.enqueue(envelope("full", f'{{"n": {n}}}'.encode()), POLICY, bound=3)
        with pytest.raises(QueueFull) as refused:
            await queue.enqueue(envelope("full"), POLICY, bound=3)
        assert refused.value.bound == 3
        assert refused.value.retry_after_s >= 1
        assert "full" in refused.value.message
        assert await queue.pending() == {"full": 3}
        await queue.enqueue(envelope("other"), POLICY, bound=3)
        assert await queue.pending() == {"full": 3, "other": 1}
        assert await queue.pending("full") == {"full": 3}

    asyncio.run(go())


def test_finished_and_dead_invocations_make_room(tmp_path: Path) -> None:
    """A running invocation still counts; once it succeeds (or is dead-lettered) an enqueue
    is taken again."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        for _ in range(2):
            await queue.enqueue(envelope("drain"), POLICY, bound=2)
        first, second = await queue.claim(2, 60)
        with pytest.raises(QueueFull):  # running: still pending
            await queue.enqueue(envelope("drain"), POLICY, bound=2)
        assert await queue.succeed(first, b"1", "r1")
        await queue.enqueue(envelope("drain"), POLICY, bound=2)
        assert await queue.fail(second, "E", "no", "r2", None)  # dead: not pending
        await queue.enqueue(envelope("drain"), POLICY, bound=2)
        with pytest.raises(QueueFull):
            await queue.enqueue(envelope("drain"), POLICY, bound=2)
        assert await queue.pending() == {"drain": 2}

    asyncio.run(go())


def test_a_failed_invocation_waiting_for_a_retry_counts(tmp_path: Path) -> None:
    """An invocation whose attempt failed and whose retry is due later is pending."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        await queue.enqueue(envelope("retrying"), POLICY, bound=1)
        (lease,) = await queue.claim(1, 60)
        assert await queue.fail(lease, "E", "again", "r", retry_at=lease.expires_at + 600)
        found = await queue.get(lease.invocation.id)
        assert found is not None
        assert found.status is Status.FAILED
        with pytest.raises(QueueFull):
            await queue.enqueue(envelope("retrying"), POLICY, bound=1)

    asyncio.run(go())


def test_a_batch_is_taken_whole_or_not_at_all(tmp_path: Path) -> None:
    """With one place left a batch of two stores neither; a batch that fits is stored."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        await queue.enqueue(envelope("batch"), POLICY, bound=3)
        await queue.enqueue(envelope("batch"), POLICY, bound=3)
        with pytest.raises(QueueFull) as refused:
            await queue.enqueue_all([envelope("batch"), envelope("batch")], POLICY, bound=3)
        assert refused.value.wanted == 2
        assert await queue.pending() == {"batch": 2}
        (taken,) = await queue.enqueue_all([envelope("batch")], POLICY, bound=3)
        assert taken.status is Status.QUEUED
        assert await queue.pending() == {"batch": 3}
        got = await queue.enqueue_all([envelope("wide"), envelope("wide")], POLICY, bound=2)
        assert len({g.id for g in got}) == 2
        assert [await queue.get(g.id) is not None for g in got] == [True, True]

    asyncio.run(go())


def test_a_batch_larger_than_the_bound_is_told_it_can_never_fit(tmp_path: Path) -> None:
    """A message of more records than the function's whole `limits.queued` (a pushed
    notification of 3 records, a bound of 2) can never be queued, however the queue
    drains: it is refused as such (BatchOverBound: not 'try again later', and not 'full'
    when nothing is pending), with nothing stored."""
    from donjon.triggers.queue import BatchOverBound

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        with pytest.raises(BatchOverBound) as refused:
            await queue.enqueue_all([envelope("tiny")] * 3, POLICY, bound=2)
        assert not isinstance(refused.value, QueueFull)
        assert "never" in refused.value.message
        assert "limits.queued" in refused.value.hint
        assert await queue.pending() == {}

    asyncio.run(go())


def test_concurrent_enqueues_never_pass_the_bound(tmp_path: Path) -> None:
    """Enqueues from several threads at once (each its own connection): exactly the bound
    are taken, every other one refused."""
    queue = sqlite_queue(tmp_path)
    taken: list[str] = []
    refused: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(10):
            try:
                queued = asyncio.run(queue.enqueue(envelope("race"), POLICY, bound=25))
            except QueueFull:
                with lock:
                    refused.append(1)
            else:
                with lock:
                    taken.append(queued.id)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 25
    assert len(refused) == 55
    assert asyncio.run(queue.pending()) == {"race": 25}


def test_a_refusal_into_a_full_queue_takes_no_write_lock(tmp_path: Path) -> None:
    """A flood into a full queue is the case the bound is for: each refusal is answered
    from a read, without the database's write lock, so it neither waits for other writers
    nor holds them up (on SQLite one writer at a time: a refusal that counted 1,000,000
    pending rows under the write lock held every other function's enqueue, claim and
    outcome ~75 ms). Here another connection holds the write lock: the refusal is still
    QueueFull at once, not 'database is locked' after the busy timeout."""
    import sqlite3

    queue = sqlite_queue(tmp_path)
    asyncio.run(queue.enqueue(envelope("held"), POLICY, bound=1))
    writer = sqlite3.connect(tmp_path / "queue.db", timeout=0, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
    try:  # (under the lock: QueueError 'database is locked' after the busy timeout)
        with pytest.raises(QueueFull):
            asyncio.run(queue.enqueue(envelope("held"), POLICY, bound=1))
        with pytest.raises(QueueFull):
            asyncio.run(queue.enqueue_all([envelope("held")] * 2, POLICY, bound=2))
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert asyncio.run(queue.pending()) == {"held": 1}


def test_a_read_that_saw_room_spares_the_next_enqueues_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An enqueue whose function's queue was read with room a moment ago counts once, under
    the lock, not twice: five enqueues far from the bound make one read without the lock.
    Taken ones add to what is remembered, so a queue this node filled is read first again:
    of a bound of 7, 5 taken and then 2 at once (no read), the 8th is refused from a read."""
    queue = sqlite_queue(tmp_path)
    reads: list[str] = []
    count = queue._count_pending

    def counted(function: str) -> int:
        reads.append(function)
        return count(function)

    monkeypatch.setattr(queue, "_count_pending", counted)

    async def go() -> None:
        for _ in range(5):
            await queue.enqueue(envelope("roomy"), POLICY, bound=7)
        assert reads == ["roomy"]
        await queue.enqueue_all([envelope("roomy")] * 2, POLICY, bound=7)
        assert reads == ["roomy"]  # 0 read + 5 taken + 2 <= 7
        with pytest.raises(QueueFull):  # 7 remembered + 1 > 7: read, and refused from it
            await queue.enqueue(envelope("roomy"), POLICY, bound=7)
        assert reads == ["roomy", "roomy"]
        assert await queue.pending() == {"roomy": 7}

    asyncio.run(go())


def test_room_seen_before_another_node_filled_the_queue_never_passes_the_bound(
    tmp_path: Path,
) -> None:
    """Node A read room; node B (another queue on the same database) then filled the
    function's queue. A's next enqueue, sparing its read, is refused by the count under
    the lock, and the one after reads first again: refused without the write lock."""
    import sqlite3

    node_a, node_b = sqlite_queue(tmp_path), sqlite_queue(tmp_path)

    async def go() -> None:
        await node_a.enqueue(envelope("shared"), POLICY, bound=4)
        for _ in range(3):
            await node_b.enqueue(envelope("shared"), POLICY, bound=4)
        with pytest.raises(QueueFull):
            await node_a.enqueue(envelope("shared"), POLICY, bound=4)
        assert await node_a.pending() == {"shared": 4}

    asyncio.run(go())
    writer = sqlite3.connect(tmp_path / "queue.db", timeout=0, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:  # (under the lock: QueueError 'database is locked' after the busy timeout)
        with pytest.raises(QueueFull):
            asyncio.run(node_a.enqueue(envelope("shared"), POLICY, bound=4))
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert asyncio.run(node_a.pending()) == {"shared": 4}


def test_redrive_is_bounded_and_leaves_the_invocation_dead(tmp_path: Path) -> None:
    """A dead invocation redriven into a full queue stays dead (QueueFull); once there is
    room the redrive is taken."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        await queue.enqueue(envelope("redrive"), POLICY, bound=1)
        (lease,) = await queue.claim(1, 60)
        assert await queue.fail(lease, "E", "dead", "r", None)
        other = await queue.enqueue(envelope("redrive"), POLICY, bound=1)
        with pytest.raises(QueueFull):
            await queue.redrive(lease.invocation.id, None, bound=1)
        dead = await queue.get(lease.invocation.id)
        assert dead is not None
        assert dead.status is Status.DEAD
        (running,) = await queue.claim(1, 60)
        assert running.invocation.id == other.id
        assert await queue.succeed(running, b"1", "r")
        redriven = await queue.redrive(lease.invocation.id, None, bound=1)
        assert redriven.status is Status.QUEUED

    asyncio.run(go())


class _Refusals:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    async def __call__(self, envelope: Envelope, error: QueueFull) -> None:
        self.seen.append((envelope.function, error.wanted))


def test_the_service_applies_the_functions_bound_and_reports_each_refusal(
    tmp_path: Path,
) -> None:
    """AsyncInvocations enqueues under the function's `limits.queued`; a refusal is told to
    `on_full` (the node counts and audits it) and no `invocation.enqueue` is recorded."""

    async def go() -> None:
        queue: SqlInvocationQueue = sqlite_queue(tmp_path)
        kept = KeptRecords()
        service = AsyncInvocations(queue, kept, lambda name: FunctionPolicy(POLICY, queued=2))
        refusals = _Refusals()
        service.on_full = refusals
        ids = await service.submit_all([envelope("svc"), envelope("svc")])
        assert len(ids) == 2
        with pytest.raises(QueueFull):
            await service.submit(envelope("svc"))
        with pytest.raises(QueueFull):
            await service.submit_all([envelope("svc")])
        assert refusals.seen == [("svc", 1), ("svc", 1)]
        assert kept.actions() == ["invocation.enqueue", "invocation.enqueue"]
        assert await service.pending() == {"svc": 2}

    asyncio.run(go())
