"""Redis going away mid-run: rates and slots per node, quotas refused, one report, recovery.

The server is killed (SIGKILL) under a node's limiter and started again on the
same port; no test asserts a duration, waits are for conditions and bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from donjon.ratelimit import (
    BucketKey,
    ConcurrencyLimiter,
    LimiterUnavailable,
    MemoryRateLimiter,
    QuotaLimit,
    Slot,
)
from donjon.ratelimit.backends import SharedLimits, share
from donjon.ratelimit.failover import BackendHealth, LimitsDown
from donjon.ratelimit.redis import RedisLimiter
from redis_support import RedisServer

K = BucketKey(function="f")
DAY = "2026-12-02"


class LocalSlots(ConcurrencyLimiter):
    """A stand-in for the node's memory slots (ratelimit/memory_slots.py, merged later)."""

    def __init__(self) -> None:
        self.tokens: dict[BucketKey, set[str]] = {}
        self.n = 0

    async def acquire(
        self, key: BucketKey, cap: int, *, wait_s: float, lease_s: float
    ) -> Slot | None:
        held = self.tokens.setdefault(key, set())
        if len(held) >= cap:
            return None
        self.n += 1
        held.add(f"local-{self.n}")
        return Slot(key, f"local-{self.n}")

    async def release(self, slot: Slot) -> None:
        self.tokens.get(slot.key, set()).discard(slot.token)

    async def held(self, key: BucketKey) -> int:
        return len(self.tokens.get(key, set()))


Reports = list[tuple[bool, str]]


def with_shared(
    server: RedisServer, body: Callable[[SharedLimits, Reports], Awaitable[None]]
) -> None:
    reports: Reports = []

    async def on_change(available: bool, reason: str) -> None:
        reports.append((available, reason))

    async def main() -> None:
        shared = share(
            RedisLimiter(server.url),
            rate_fallback=MemoryRateLimiter(),
            slots_fallback=LocalSlots(),
            on_change=on_change,
        )
        try:
            await body(shared, reports)
        finally:
            await shared.rates.close()

    asyncio.run(main())


async def until(check: Callable[[], Awaitable[bool]], what: str, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not await check():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
def test_an_outage_falls_back_per_node_refuses_quotas_and_recovers(
    redis_server: RedisServer,
) -> None:
    """Kill Redis: rates go on in the node's own buckets, quotas are refused (fail closed),
    the outage is reported once whatever the number of calls; restart it: shared again,
    reported once."""

    async def body(shared: SharedLimits, reports: Reports) -> None:
        quota = [QuotaLimit("key:k1", max_invocations=100)]
        assert (await shared.rates.take(K, 3, 3600)).allowed
        assert (await shared.quotas.take(quota, DAY)).allowed
        assert reports == []

        redis_server.kill()
        # Rates: the node's own bucket of 3/hour, enforced alone.
        local = [(await shared.rates.take(K, 3, 3600)).allowed for _ in range(5)]
        assert local == [True, True, True, False, False]
        # A token given back (a call refused after its take) goes to the buckets in force.
        await shared.rates.give_back(K, 3, 3600)
        assert [(await shared.rates.take(K, 3, 3600)).allowed for _ in range(2)] == [True, False]
        # Quotas: refused, never counted nowhere; a unit given back stays counted, unraised.
        for _ in range(5):
            with pytest.raises(LimiterUnavailable):
                await shared.quotas.take(quota, DAY)
        await shared.quotas.give_back(["key:k1"], DAY)
        # Slots: the node's own.
        slot = await shared.slots.acquire(K, 1, wait_s=0, lease_s=30) if shared.slots else None
        assert slot is not None and slot.token.startswith("local-")
        await shared.health.settle()
        assert [up for up, _ in reports] == [False]
        assert "cannot be used" in reports[0][1]
        assert shared.slots is not None
        await shared.slots.release(slot)

        redis_server.start()  # the same port, empty (no persistence)

        async def shared_again() -> bool:
            try:
                return (await shared.quotas.take(quota, DAY)).allowed
            except LimiterUnavailable:
                return False

        await until(shared_again, "quotas answered after Redis came back")
        await shared.health.settle()
        assert [up for up, _ in reports] == [False, True]
        # Shared buckets again: the server's bucket (empty store: a full one).
        assert (await shared.rates.take(BucketKey(function="g"), 1, 3600)).allowed
        with redis_server.client() as c:
            assert c.exists('donjon:rate:[null,"g",null]') == 1

    with_shared(redis_server, body)


def test_during_an_outage_the_store_is_asked_once_per_retry() -> None:
    """After a failure, calls do not each wait on the store: until retry_s has passed none
    asks it; then one call (the probe) does, and the others still go without."""
    now = [100.0]
    health = BackendHealth("store", retry_s=2.0, clock=lambda: now[0])
    asked: list[int] = []

    async def failing() -> int:
        asked.append(1)
        raise LimiterUnavailable("down")

    async def main() -> None:
        with pytest.raises(LimiterUnavailable):
            await health.ask(failing)
        assert not health.up
        for _ in range(10):
            with pytest.raises(LimitsDown):
                await health.ask(failing)
        assert len(asked) == 1
        now[0] += 2.5
        assert health.usable()  # the probe
        assert not health.usable()  # one at a time
        health.answered()
        assert health.up and health.outages == 1

    asyncio.run(main())


@pytest.mark.slow
def test_a_slot_released_during_a_blip_is_given_back_once_the_store_answers(
    redis_server: RedisServer,
) -> None:
    """Redis stalls past the timeout for a moment (its data kept): a shared slot whose call
    ends in the outage window is given back once Redis answers, not held until its lease
    ends (a one-second blip held a function's slots, on every node, for its timeout plus a
    minute: every call of it 503)."""

    async def main() -> None:
        shared = share(
            RedisLimiter(redis_server.url, timeout_s=0.5),
            rate_fallback=MemoryRateLimiter(),
            slots_fallback=LocalSlots(),
        )
        assert shared.slots is not None
        try:
            slot = await shared.slots.acquire(K, 1, wait_s=0, lease_s=600)
            assert slot is not None and not slot.token.startswith("local-")
            with redis_server.client() as c:
                c.client_pause(1500, all=True)  # a stall: the reply is late, nothing lost
            await shared.rates.take(BucketKey(function="g"), 9, 60)  # times out: an outage
            assert not shared.health.up
            await shared.slots.release(slot)  # the call ends during the outage

            async def shared_slot() -> bool:
                assert shared.slots is not None
                got = await shared.slots.acquire(K, 1, wait_s=0, lease_s=600)
                if got is None or got.token.startswith("local-"):
                    if got is not None:
                        await shared.slots.release(got)
                    return False
                return True

            await until(shared_slot, "the shared slot was given back", limit_s=20)
        finally:
            await shared.rates.close()

    asyncio.run(main())


@pytest.mark.slow
def test_compute_charged_during_a_blip_is_counted_once_the_store_answers(
    redis_server: RedisServer,
) -> None:
    """Redis stalls past the timeout for a moment: the compute of calls that end in the
    outage window is added to their quotas once Redis answers, once, not dropped (calls
    ending then ran free of their compute quota: a denial of wallet)."""
    day = time.strftime("%Y-%m-%d", time.gmtime())

    async def main() -> None:
        shared = share(
            RedisLimiter(redis_server.url, timeout_s=0.5), rate_fallback=MemoryRateLimiter()
        )
        try:
            await shared.quotas.add_compute(["key:k1", "role:r"], day, 1000)
            with redis_server.client() as c:
                c.client_pause(1500, all=True)  # a stall: the reply is late, nothing lost
            await shared.rates.take(BucketKey(function="g"), 9, 60)  # times out: an outage
            assert not shared.health.up
            for _ in range(3):  # three calls end during the outage: owed, no error
                await shared.quotas.add_compute(["key:k1", "role:r"], day, 2000)

            async def counted() -> bool:
                try:
                    used = await shared.quotas.usage(["key:k1", "role:r"], day)
                except LimiterUnavailable:
                    return False
                assert used["key:k1"][1] in (1000, 7000), used
                return used == {"key:k1": (0, 7000), "role:r": (0, 7000)}

            await until(counted, "the compute of the outage was charged", limit_s=20)
            assert await shared.quotas.usage(["key:k1"], day) == {"key:k1": (0, 7000)}
        finally:
            await shared.rates.close()

    asyncio.run(main())
