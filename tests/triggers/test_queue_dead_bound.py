"""The bound on a function's dead-lettered invocations (DONJON_QUEUE_MAX_DEAD) on a real
SQLite file: at the bound a new enqueue is refused with nothing stored (the dead letters
are never dropped), another function's queue is its own, and a purge or a redrive makes
room again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from donjon.store import connect, create_schema
from donjon.store.tables import invocations
from donjon.triggers.queue import DeadLettersFull, QueueFull, RetryPolicy, SqlInvocationQueue
from queue_support import envelope

POLICY = RetryPolicy(attempts=1, backoff_s=1.0, max_age_s=3600)


def _queue(tmp_path: Path, max_dead: int) -> SqlInvocationQueue:
    engine = connect(f"sqlite:///{tmp_path / 'queue.db'}")
    create_schema(engine)
    return SqlInvocationQueue(engine, max_dead=max_dead)


async def _kill(queue: SqlInvocationQueue, function: str, n: int) -> None:
    """Enqueue `n` invocations of `function` and dead-letter each."""
    for _ in range(n):
        await queue.enqueue(envelope(function), POLICY, bound=100)
    for lease in await queue.claim(n, 60):
        assert await queue.fail(lease, "E", "no", "r", None)


def _rows(queue: SqlInvocationQueue, function: str) -> int:
    with queue.engine.connect() as conn:
        count: int = conn.execute(
            select(func.count()).select_from(invocations).where(invocations.c.function == function)
        ).scalar_one()
    return count


def test_enqueue_past_the_dead_letter_bound_is_refused_and_stores_nothing(
    tmp_path: Path,
) -> None:
    """Two dead of a bound of two: the next enqueue raises DeadLettersFull (a QueueFull,
    so every way in answers it as a full queue) naming the dead-letter queue, and stores
    nothing; another function still enqueues."""

    async def go() -> None:
        queue = _queue(tmp_path, max_dead=2)
        await _kill(queue, "failing", 2)
        with pytest.raises(DeadLettersFull) as refused:
            await queue.enqueue(envelope("failing"), POLICY, bound=100)
        assert isinstance(refused.value, QueueFull)
        assert refused.value.bound == 2
        assert "dead-letter queue of function failing is full" in refused.value.message
        assert _rows(queue, "failing") == 2  # the refused one is not stored
        with pytest.raises(DeadLettersFull):  # also a batch, and with no pending bound
            await queue.enqueue_all([envelope("failing")] * 2, POLICY)
        assert _rows(queue, "failing") == 2
        await queue.enqueue(envelope("other"), POLICY, bound=100)
        assert await queue.pending() == {"other": 1}

    asyncio.run(go())


def test_purge_or_redrive_makes_room(tmp_path: Path) -> None:
    """Once a dead invocation is redriven (it is pending again) or the dead are purged, the
    function's enqueues are taken again; the dead letters were never dropped to make room."""

    async def go() -> None:
        queue = _queue(tmp_path, max_dead=2)
        await _kill(queue, "fixme", 2)
        first = (await queue.dead("fixme", 10))[0]
        await queue.redrive(first.id, POLICY, bound=100)
        await queue.enqueue(envelope("fixme"), POLICY, bound=100)
        assert len(await queue.dead("fixme", 10)) == 1  # the other is still kept
        assert await queue.purge("fixme") == 1
        await queue.enqueue(envelope("fixme"), POLICY, bound=100)
        assert await queue.pending() == {"fixme": 3}

    asyncio.run(go())
