"""The in-memory quota counter: all or nothing, and persisted so a restart keeps the day."""

from __future__ import annotations

import asyncio
from pathlib import Path

from donjon.ratelimit import QuotaLimit
from donjon.ratelimit.memory_quota import MemoryQuotaCounter
from donjon.store import QuotaStore, connect, create_schema

DAY = "2026-12-02"


def _store(tmp_path: Path) -> QuotaStore:
    engine = connect(f"sqlite:///{tmp_path / 'donjon.db'}")
    create_schema(engine)
    return QuotaStore(engine)


def _clock() -> float:
    return 1796169600.0 + 3600  # 2026-12-02T01:00:00Z


def test_take_is_all_or_nothing() -> None:
    """A refusal by one subject counts nothing for the others; the refusal names it."""

    async def run() -> None:
        counter = MemoryQuotaCounter()
        tight = QuotaLimit("key:k", max_invocations=2)
        loose = QuotaLimit("function:f", max_invocations=100)
        assert (await counter.take([loose, tight], DAY)).allowed
        assert (await counter.take([loose, tight], DAY)).allowed
        refused = await counter.take([loose, tight], DAY)
        assert not refused.allowed
        assert (refused.subject, refused.measure, refused.used, refused.limit) == (
            "key:k",
            "invocations",
            2,
            2,
        )
        assert await counter.usage(["function:f", "key:k", "role:x"], DAY) == {
            "function:f": (2, 0),
            "key:k": (2, 0),
            "role:x": (0, 0),
        }

    asyncio.run(run())


def test_compute_quota_refuses_once_spent() -> None:
    """Compute added after calls counts against max_compute_ms from the next take."""

    async def run() -> None:
        counter = MemoryQuotaCounter()
        limit = QuotaLimit("function:f", max_compute_ms=1000)
        assert (await counter.take([limit], DAY)).allowed
        await counter.add_compute(["function:f"], DAY, 999)
        assert (await counter.take([limit], DAY)).allowed
        await counter.add_compute(["function:f"], DAY, 1)
        refused = await counter.take([limit], DAY)
        assert (refused.allowed, refused.measure, refused.used) == (False, "compute-seconds", 1000)
        assert (await counter.take([limit], "2026-12-03")).allowed  # a new day starts at 0

    asyncio.run(run())


def test_usage_survives_a_restart_of_the_counter(tmp_path: Path) -> None:
    """What one counter wrote at close, a new counter on the same database loads at start."""
    store = _store(tmp_path)
    limit = QuotaLimit("key:k", max_invocations=3)

    async def first() -> None:
        counter = MemoryQuotaCounter(store, clock=_clock)
        await counter.load()
        counter.start()
        for _ in range(2):
            assert (await counter.take([limit], DAY)).allowed
        await counter.add_compute(["key:k"], DAY, 250)
        await counter.close()

    async def second() -> None:
        counter = MemoryQuotaCounter(store, clock=_clock)
        await counter.load()
        assert await counter.usage(["key:k"], DAY) == {"key:k": (2, 250)}
        assert (await counter.take([limit], DAY)).allowed
        assert not (await counter.take([limit], DAY)).allowed
        await counter.close()

    asyncio.run(first())
    asyncio.run(second())
    assert store.usage(DAY) == {"key:k": (3, 250)}


def test_flush_writes_increments_and_reads_other_nodes_back(tmp_path: Path) -> None:
    """Two counters on one database: each writes its own share; a flush sees the sum."""
    store = _store(tmp_path)
    limit = QuotaLimit("function:f", max_invocations=10)

    async def run() -> None:
        a = MemoryQuotaCounter(store, clock=_clock)
        b = MemoryQuotaCounter(store, clock=_clock)
        for _ in range(3):
            await a.take([limit], DAY)
        await b.take([limit], DAY)
        await a.flush()
        await b.flush()
        assert store.usage(DAY) == {"function:f": (4, 0)}
        assert await b.usage(["function:f"], DAY) == {"function:f": (4, 0)}
        await a.close()
        await b.close()

    asyncio.run(run())


def test_old_days_are_pruned(tmp_path: Path) -> None:
    """Rows older than keep_days are deleted at the first flush of a day."""
    store = _store(tmp_path)
    store.add_usage("2026-11-01", {"function:f": (5, 0)})
    store.add_usage("2026-12-01", {"function:f": (1, 0)})

    async def run() -> None:
        counter = MemoryQuotaCounter(store, clock=_clock, keep_days=8)
        await counter.flush()

    asyncio.run(run())
    assert store.usage("2026-11-01") == {}
    assert store.usage("2026-12-01") == {"function:f": (1, 0)}
