"""The node's ceiling on pending invocations (DONJON_QUEUE_MAX_PENDING, node_bound.py) on
a real SQLite file, with enqueues at once on the queue's threads."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import func, select

from donjon.store import connect, create_schema
from donjon.store.tables import invocations
from donjon.triggers.queue import NodeQueueFull, RetryPolicy, SqlInvocationQueue
from donjon.triggers.queue.node_bound import HINT_S
from queue_support import envelope

POLICY = RetryPolicy(attempts=1, backoff_s=1.0, max_age_s=3600)


def test_batches_enqueued_at_once_stay_under_the_ceiling(tmp_path: Path) -> None:
    """Twenty batches of five (the records of twenty storage events, say) of twenty
    functions at once, under a ceiling of ten: two are queued, the rest refused (each saw
    the same count, and 35 were queued); the room the refused asked for is given back:
    once the ten have run, a batch fits again."""
    engine = connect(f"sqlite:///{tmp_path / 'queue.db'}")
    create_schema(engine)
    queue = SqlInvocationQueue(engine, max_pending=10)

    async def batch(n: int) -> bool:
        try:
            await queue.enqueue_all([envelope(f"f{n}")] * 5, POLICY, bound=100)
        except NodeQueueFull:
            return False
        return True

    async def together() -> list[bool]:
        return await asyncio.gather(*(batch(n) for n in range(20)))

    assert asyncio.run(together()).count(True) == 2
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(invocations)).scalar_one() == 10
    assert not asyncio.run(batch(20))

    async def run_all() -> None:
        for lease in await queue.claim(10, 60):
            assert await queue.succeed(lease, b"null", "r")

    asyncio.run(run_all())
    time.sleep(HINT_S)  # the count seen is read again
    assert asyncio.run(batch(21))
