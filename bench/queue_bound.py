"""The cost of the queue's bound (`limits.queued`) per enqueue, on a real SQLite file.

    .venv/bin/python bench/queue_bound.py [--n 2000] [--rounds 3] [--sealed]

In one process, on one database file, enqueues of one function `--n` at a time, each
committed (the node's own durability: WAL, synchronous=FULL), in four phases:

1. unbounded: the insert alone, as every enqueue was before the bound (`bound=None`);
2. bounded, the function's queue nearly empty (its pending rows deleted first);
3. bounded, with 10,000 of the function's rows already pending (the default bound,
   so each enqueue counts that many index entries), one place left per enqueue;
4. refused: the same full queue, each enqueue refused (QueueFull, nothing written).

It prints the mean time per enqueue of each phase and phases 2 to 4 as ratios of
phase 1 of the same round. Nothing here is asserted: the suite asserts what the
bound does (tests/triggers/test_queue_bound.py), not how fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import delete

from donjon.store import connect, create_schema
from donjon.store.tables import invocations
from donjon.triggers.envelope import Envelope
from donjon.triggers.queue import QueueFull, RetryPolicy, SqlInvocationQueue
from donjon.vault import MasterKey
from donjon.vault.queueseal import QueueSealer

POLICY = RetryPolicy()
FULL = 10_000


def _envelope() -> Envelope:
    return Envelope(
        function="bench",
        event=b'{"url": "https://example.com/a.png"}',
        trigger="invoke",
        source="/v1/functions/bench/invoke",
        type="dev.donjon.invoke",
        principal="key:0123456789abcdef",
    )


async def _phase(queue: SqlInvocationQueue, n: int, bound: int | None) -> float:
    """Mean seconds per enqueue of `n` (refused ones included)."""
    envelope = _envelope()
    start = time.perf_counter()
    for _ in range(n):
        with contextlib.suppress(QueueFull):
            await queue.enqueue(envelope, POLICY, bound=bound)
    return (time.perf_counter() - start) / n


def _fill(path: Path, rows: int) -> None:
    """`rows` pending rows of the function, written in one transaction (setup, not timed)."""
    now = time.time()
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO invocations (id, function, trigger, source, type, event, status,"
            " attempts, max_attempts, backoff_s, max_age_s, enqueued_at, next_at, updated_at)"
            " VALUES (?, 'bench', 'invoke', '/', 't', x'7b7d', 'queued', 0, 3, 2, 3600, ?, ?, ?)",
            [(f"fill-{i}", now, now, now) for i in range(rows)],
        )


async def _round(path: Path, queue: SqlInvocationQueue, n: int) -> list[float]:
    def clear() -> None:
        with queue.engine.begin() as conn:
            conn.execute(delete(invocations))

    clear()
    unbounded = await _phase(queue, n, None)
    clear()
    empty = await _phase(queue, n, FULL + n)
    clear()
    _fill(path, FULL)
    near_full = await _phase(queue, n, FULL + n)  # one more place each time
    refused = await _phase(queue, n, FULL)
    return [unbounded, empty, near_full, refused]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sealed", action="store_true", help="seal events, as the node does")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "queue.db"
        engine = connect(f"sqlite:///{path}")
        create_schema(engine)
        sealer = QueueSealer(MasterKey(secrets.token_bytes(32))) if args.sealed else None
        queue = SqlInvocationQueue(engine, sealer)
        rounds = [asyncio.run(_round(path, queue, args.n)) for _ in range(args.rounds)]
        engine.dispose()
    names = ["unbounded (before)", "bounded, empty", f"bounded, {FULL} pending", "refused, full"]
    print(f"enqueue of one event, {args.n} per phase, {args.rounds} rounds (SQLite, committed)")
    for i, name in enumerate(names):
        times = [r[i] for r in rounds]
        ratios = [r[i] / r[0] for r in rounds]
        print(
            f"  {name:<26} {statistics.median(times) * 1e6:8.1f} us median"
            f"  ({min(times) * 1e6:.1f}-{max(times) * 1e6:.1f})"
            f"  x{statistics.median(ratios):.2f} of unbounded"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
