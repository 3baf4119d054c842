"""The in-memory concurrency slots: caps, bounded waits, hand-over, leases, cancellation."""

from __future__ import annotations

import asyncio

from donjon.ratelimit import BucketKey, MemoryConcurrencyLimiter, MemoryRateLimiter

K = BucketKey(principal="key:a", scope="concurrency")
OTHER = BucketKey(principal="key:b", scope="concurrency")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cap_is_held_then_refused_without_waiting() -> None:
    """Two slots of cap 2 are granted; a third with no wait gets None; another key is free."""

    async def go() -> None:
        slots = MemoryConcurrencyLimiter()
        a = await slots.acquire(K, 2, wait_s=0, lease_s=60)
        b = await slots.acquire(K, 2, wait_s=0, lease_s=60)
        assert a is not None and b is not None
        assert await slots.acquire(K, 2, wait_s=0, lease_s=60) is None
        assert await slots.held(K) == 2
        assert await slots.acquire(OTHER, 2, wait_s=0, lease_s=60) is not None
        await slots.release(a)
        await slots.release(a)  # idempotent
        assert await slots.held(K) == 1

    asyncio.run(go())


def test_a_waiter_gets_the_released_slot() -> None:
    """A call waiting for a full key gets the slot its holder releases, before a newcomer."""

    async def go() -> None:
        slots = MemoryConcurrencyLimiter()
        held = await slots.acquire(K, 1, wait_s=0, lease_s=60)
        assert held is not None
        waiter = asyncio.create_task(slots.acquire(K, 1, wait_s=60, lease_s=60))
        while slots.waiting == 0:
            await asyncio.sleep(0)
        await slots.release(held)
        # The slot went to the waiter: a newcomer finds the key full.
        assert await slots.acquire(K, 1, wait_s=0, lease_s=60) is None
        got = await waiter
        assert got is not None and await slots.held(K) == 1
        await slots.release(got)
        assert await slots.held(K) == 0

    asyncio.run(go())


def test_the_wait_is_bounded_in_time() -> None:
    """A call that waits past wait_s for a full key gets None and leaves no waiter behind."""

    async def go() -> None:
        slots = MemoryConcurrencyLimiter()
        held = await slots.acquire(K, 1, wait_s=0, lease_s=60)
        assert held is not None
        assert await slots.acquire(K, 1, wait_s=0.05, lease_s=60) is None
        assert slots.waiting == 0
        await slots.release(held)
        assert await slots.held(K) == 0

    asyncio.run(go())


def test_the_wait_is_bounded_in_count() -> None:
    """Past max_waiters per key (and max_waiting in all) a call is refused at once."""

    async def go() -> None:
        slots = MemoryConcurrencyLimiter(max_waiters=2, max_waiting=3)
        held = await slots.acquire(K, 1, wait_s=0, lease_s=60)
        other = await slots.acquire(OTHER, 1, wait_s=0, lease_s=60)
        assert held is not None and other is not None
        waiters = [
            asyncio.create_task(slots.acquire(K, 1, wait_s=60, lease_s=60)) for _ in range(2)
        ]
        while slots.waiting < 2:
            await asyncio.sleep(0)
        assert await slots.acquire(K, 1, wait_s=60, lease_s=60) is None  # per key
        third = asyncio.create_task(slots.acquire(OTHER, 1, wait_s=60, lease_s=60))
        while slots.waiting < 3:
            await asyncio.sleep(0)
        assert await slots.acquire(OTHER, 1, wait_s=60, lease_s=60) is None  # in all
        for task in [*waiters, third]:
            task.cancel()
        await asyncio.gather(*waiters, third, return_exceptions=True)
        assert slots.waiting == 0

    asyncio.run(go())


def test_a_cancelled_waiter_gives_back_a_slot_handed_to_it() -> None:
    """A waiter cancelled as the slot is handed to it passes the slot on: none is lost."""

    async def go() -> None:
        slots = MemoryConcurrencyLimiter()
        held = await slots.acquire(K, 1, wait_s=0, lease_s=60)
        assert held is not None
        first = asyncio.create_task(slots.acquire(K, 1, wait_s=60, lease_s=60))
        second = asyncio.create_task(slots.acquire(K, 1, wait_s=60, lease_s=60))
        while slots.waiting < 2:
            await asyncio.sleep(0)
        await slots.release(held)  # handed to `first`, which is cancelled before it runs
        first.cancel()
        got = await second
        assert got is not None
        assert first.cancelled() or (await first) is None
        await slots.release(got)
        assert await slots.held(K) == 0

    asyncio.run(go())


def test_a_leaked_slot_is_freed_when_its_lease_ends() -> None:
    """A slot never released is freed once its lease is over, and goes to a waiter."""

    async def go() -> None:
        clock = Clock()
        slots = MemoryConcurrencyLimiter(clock=clock)
        assert await slots.acquire(K, 1, wait_s=0, lease_s=30) is not None
        assert await slots.acquire(K, 1, wait_s=0, lease_s=30) is None
        clock.now += 31
        assert await slots.held(K) == 0
        assert await slots.acquire(K, 1, wait_s=0, lease_s=30) is not None

    asyncio.run(go())


def test_idle_keys_are_forgotten() -> None:
    """Keys with nothing held or waiting are swept past max_idle_keys: a flood of callers
    leaves at most that many behind."""

    async def go() -> MemoryConcurrencyLimiter:
        slots = MemoryConcurrencyLimiter(max_idle_keys=100)
        for i in range(10_000):
            key = BucketKey(principal=f"key:{i}", scope="concurrency")
            slot = await slots.acquire(key, 1, wait_s=0, lease_s=60)
            assert slot is not None
            await slots.release(slot)
        return slots

    assert len(asyncio.run(go())._keys) <= 101


def test_burst_sets_the_bucket_size_apart_from_the_rate() -> None:
    """A bucket of 1/second with burst 5 allows 5 at once, then one a second."""
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    key = BucketKey(principal="key:a")

    def take() -> bool:
        return asyncio.run(limiter.take(key, 1, 1.0, 5)).allowed

    assert [take() for _ in range(6)] == [True] * 5 + [False]
    clock.now += 1.0
    assert take() and not take()
    clock.now += 100
    assert [take() for _ in range(6)] == [True] * 5 + [False]  # never past the burst


def test_a_decision_says_what_is_left_and_when_it_is_full() -> None:
    """`remaining` counts whole tokens left; `reset_s` is when the bucket is full again."""
    limiter = MemoryRateLimiter(Clock())
    key = BucketKey(principal="key:a")
    first = asyncio.run(limiter.take(key, 10, 10.0, 4))
    assert first.allowed and first.remaining == 3 and first.reset_s == 1.0


def test_try_acquire_grants_a_free_slot_and_never_overtakes_a_waiter() -> None:
    """`try_acquire` (no coroutine) grants a free slot at once, answers None when the key
    is full or a call waits for it (the waiter keeps its turn), and `release_now` hands
    a freed slot to that waiter."""

    async def go() -> None:
        slots = MemoryConcurrencyLimiter()
        held = slots.try_acquire(K, 1, lease_s=60)
        assert held is not None and await slots.held(K) == 1
        assert slots.try_acquire(K, 1, lease_s=60) is None  # full
        waiter = asyncio.create_task(slots.acquire(K, 1, wait_s=60, lease_s=60))
        while slots.waiting == 0:
            await asyncio.sleep(0)
        slots.release_now(held)
        assert slots.try_acquire(K, 1, lease_s=60) is None  # handed to the waiter
        got = await waiter
        assert got is not None and await slots.held(K) == 1
        slots.release_now(got)
        slots.release_now(got)  # idempotent
        assert await slots.held(K) == 0
        assert slots.try_acquire(K, 1, lease_s=60) is not None

    asyncio.run(go())
