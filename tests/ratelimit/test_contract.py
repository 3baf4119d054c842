"""The limiter's contract (ratelimit/interface.py), the same for every backend.

Each test runs over the backends of its role (tests/ratelimit/conftest.py):
memory and Redis for rates, Redis for slots and quotas until the memory ones
are merged. Nothing here asserts a duration: waits are for conditions, bounded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from donjon.ratelimit import (
    BucketKey,
    ConcurrencyLimiter,
    QuotaCounter,
    QuotaLimit,
    RateLimiter,
)

K = BucketKey(function="f")
#: Today (UTC): a day's Redis keys expire two days after it ends (redis_quota.py), so a
#: fixed date stopped being countable once that passed (these tests failed from
#: 2026-12-05 00:00 UTC on).
DAY = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
#: The day after, counted apart.
NEXT_DAY = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%d")


async def close(role: object) -> None:
    closer = getattr(role, "close", None)
    if closer is not None:
        await closer()


def run(make: Callable[[], Any], body: Callable[[Any], Awaitable[None]]) -> None:
    """Make the role inside a fresh loop, run `body` with it, close it."""

    async def main() -> None:
        role = make()
        try:
            await body(role)
        finally:
            await close(role)

    asyncio.run(main())


# -- rates ----------------------------------------------------------------------------


def test_a_bucket_allows_its_count_then_says_when(make_rates: Callable[[], RateLimiter]) -> None:
    """3/minute: three calls pass at once, the fourth is refused with a wait of at most 20 s."""

    async def body(rates: RateLimiter) -> None:
        assert [(await rates.take(K, 3, 60)).allowed for _ in range(3)] == [True] * 3
        refused = await rates.take(K, 3, 60)
        assert not refused.allowed
        assert 0 < refused.retry_after_s <= 20.0

    run(make_rates, body)


def test_burst_sets_the_bucket_size(make_rates: Callable[[], RateLimiter]) -> None:
    """1/minute with burst 4: four calls pass at once, the fifth is refused."""

    async def body(rates: RateLimiter) -> None:
        allowed = [(await rates.take(K, 1, 60, burst=4)).allowed for _ in range(5)]
        assert allowed == [True, True, True, True, False]

    run(make_rates, body)


def test_a_token_given_back_is_taken_again_never_past_the_burst(
    make_rates: Callable[[], RateLimiter],
) -> None:
    """1/hour, burst 2: a token given back after the bucket is spent lets one more call
    through; tokens given back to a full bucket (or one never taken from) add nothing."""

    async def body(rates: RateLimiter) -> None:
        assert [(await rates.take(K, 1, 3600, burst=2)).allowed for _ in range(3)] == [
            True,
            True,
            False,
        ]
        await rates.give_back(K, 1, 3600, burst=2)
        assert [(await rates.take(K, 1, 3600, burst=2)).allowed for _ in range(2)] == [
            True,
            False,
        ]
        other = BucketKey(function="g")
        for _ in range(3):
            await rates.give_back(other, 1, 3600, burst=2)
        assert [(await rates.take(other, 1, 3600, burst=2)).allowed for _ in range(3)] == [
            True,
            True,
            False,
        ]

    run(make_rates, body)


def test_buckets_of_different_keys_are_apart(make_rates: Callable[[], RateLimiter]) -> None:
    """A principal's, a function's, a pair's and a client's buckets never share tokens."""
    keys = [
        BucketKey(function="f"),
        BucketKey(principal="p1", function="f"),
        BucketKey(principal="p1"),
        BucketKey(client="127.0.0.1"),
        BucketKey(principal="p1", scope="throttle"),
    ]

    async def body(rates: RateLimiter) -> None:
        for key in keys:
            assert (await rates.take(key, 1, 3600)).allowed
            assert not (await rates.take(key, 1, 3600)).allowed

    run(make_rates, body)


def test_a_spent_bucket_refills(make_rates: Callable[[], RateLimiter]) -> None:
    """20/second: once spent, a call passes again after a while (polled, bounded)."""

    async def body(rates: RateLimiter) -> None:
        while (await rates.take(K, 20, 1)).allowed:
            pass
        deadline = time.monotonic() + 30
        while not (await rates.take(K, 20, 1)).allowed:
            assert time.monotonic() < deadline, "the bucket never refilled"
            await asyncio.sleep(0.02)

    run(make_rates, body)


# -- slots ----------------------------------------------------------------------------


def test_slots_are_capped_and_given_back(make_slots: Callable[[], ConcurrencyLimiter]) -> None:
    """Cap 2: two slots are held, a third is refused, a release makes room; release twice is
    harmless."""

    async def body(slots: ConcurrencyLimiter) -> None:
        a = await slots.acquire(K, 2, wait_s=0, lease_s=60)
        b = await slots.acquire(K, 2, wait_s=0, lease_s=60)
        assert a is not None and b is not None and a.token != b.token
        assert await slots.acquire(K, 2, wait_s=0, lease_s=60) is None
        assert await slots.held(K) == 2
        await slots.release(a)
        await slots.release(a)
        assert await slots.held(K) == 1
        assert await slots.acquire(K, 2, wait_s=0, lease_s=60) is not None

    run(make_slots, body)


def test_a_waiting_call_gets_a_slot_freed_during_its_wait(
    make_slots: Callable[[], ConcurrencyLimiter],
) -> None:
    """A call that finds the cap full waits; a release during the wait gives it the slot."""

    async def body(slots: ConcurrencyLimiter) -> None:
        held = await slots.acquire(K, 1, wait_s=0, lease_s=60)
        assert held is not None
        waiter = asyncio.ensure_future(slots.acquire(K, 1, wait_s=60, lease_s=60))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await slots.release(held)
        assert await asyncio.wait_for(waiter, 60) is not None

    run(make_slots, body)


def test_a_full_cap_refuses_after_the_wait(make_slots: Callable[[], ConcurrencyLimiter]) -> None:
    """Nothing freed within wait_s: the call gets None, and the slot is still held."""

    async def body(slots: ConcurrencyLimiter) -> None:
        assert await slots.acquire(K, 1, wait_s=0, lease_s=60) is not None
        assert await slots.acquire(K, 1, wait_s=0.2, lease_s=60) is None
        assert await slots.held(K) == 1

    run(make_slots, body)


def test_a_dead_holders_slot_frees_after_its_lease(
    make_slots: Callable[[], ConcurrencyLimiter],
) -> None:
    """A slot never released (its holder died) is free again once its lease ends."""

    async def body(slots: ConcurrencyLimiter) -> None:
        assert await slots.acquire(K, 1, wait_s=0, lease_s=0.3) is not None
        assert await slots.acquire(K, 1, wait_s=30, lease_s=60) is not None
        assert await slots.held(K) == 1

    run(make_slots, body)


# -- quotas ---------------------------------------------------------------------------


def test_a_quota_take_is_all_or_nothing(make_quotas: Callable[[], QuotaCounter]) -> None:
    """With one subject spent, a take is refused naming it, and no subject is counted."""

    async def body(quotas: QuotaCounter) -> None:
        key = QuotaLimit("key:k1", max_invocations=5)
        fn = QuotaLimit("function:f", max_invocations=2)
        assert (await quotas.take([key, fn], DAY)).allowed
        assert (await quotas.take([key, fn], DAY)).allowed
        refused = await quotas.take([key, fn], DAY)
        assert not refused.allowed
        assert (refused.subject, refused.measure, refused.used, refused.limit) == (
            "function:f",
            "invocations",
            2,
            2,
        )
        assert await quotas.usage(["key:k1", "function:f"], DAY) == {
            "key:k1": (2, 0),
            "function:f": (2, 0),
        }

    run(make_quotas, body)


def test_an_invocation_given_back_is_uncounted_never_below_zero(
    make_quotas: Callable[[], QuotaCounter],
) -> None:
    """A quota of 2 spent, one invocation given back: one more call passes; a subject
    never counted is not taken below zero (its quota is not raised by gifts)."""

    async def body(quotas: QuotaCounter) -> None:
        limits = [QuotaLimit("key:a", max_invocations=2), QuotaLimit("function:f")]
        assert [(await quotas.take(limits, DAY)).allowed for _ in range(3)] == [
            True,
            True,
            False,
        ]
        await quotas.give_back(["key:a", "function:f"], DAY)
        used = await quotas.usage(["key:a", "function:f"], DAY)
        assert used == {"key:a": (1, 0), "function:f": (1, 0)}
        assert (await quotas.take(limits, DAY)).allowed
        assert not (await quotas.take(limits, DAY)).allowed
        for _ in range(2):
            await quotas.give_back(["key:b"], DAY)
        assert (await quotas.usage(["key:b"], DAY))["key:b"] == (0, 0)
        once = [QuotaLimit("key:b", max_invocations=1)]
        assert [(await quotas.take(once, DAY)).allowed for _ in range(2)] == [True, False]

    run(make_quotas, body)


def test_compute_counts_against_its_quota(make_quotas: Callable[[], QuotaCounter]) -> None:
    """Compute added past max_compute_ms refuses the next take, as compute-seconds."""

    async def body(quotas: QuotaCounter) -> None:
        limit = QuotaLimit("role:dev", max_compute_ms=1000)
        assert (await quotas.take([limit], DAY)).allowed
        await quotas.add_compute(["role:dev"], DAY, 1200)
        refused = await quotas.take([limit], DAY)
        assert (refused.allowed, refused.measure, refused.used, refused.limit) == (
            False,
            "compute-seconds",
            1200,
            1000,
        )
        assert await quotas.usage(["role:dev"], DAY) == {"role:dev": (1, 1200)}

    run(make_quotas, body)


def test_a_quota_of_zero_refuses_the_first_call(make_quotas: Callable[[], QuotaCounter]) -> None:
    """An invocations quota of 0 (an admin's "no more calls today") refuses the day's first
    take; in memory, a subject not yet counted that day was skipped, and one call ran."""

    async def body(quotas: QuotaCounter) -> None:
        none = QuotaLimit("function:f", max_invocations=0)
        refused = await quotas.take([QuotaLimit("key:k", max_invocations=5), none], DAY)
        assert (refused.allowed, refused.subject, refused.used, refused.limit) == (
            False,
            "function:f",
            0,
            0,
        )
        assert await quotas.usage(["key:k", "function:f"], DAY) == {
            "key:k": (0, 0),
            "function:f": (0, 0),
        }

    run(make_quotas, body)


def test_days_are_counted_apart(make_quotas: Callable[[], QuotaCounter]) -> None:
    """A spent quota of one day leaves the next day's whole; unknown subjects read (0, 0)."""

    async def body(quotas: QuotaCounter) -> None:
        limit = QuotaLimit("key:k1", max_invocations=1)
        assert (await quotas.take([limit], DAY)).allowed
        assert not (await quotas.take([limit], DAY)).allowed
        assert (await quotas.take([limit], NEXT_DAY)).allowed
        assert await quotas.usage(["key:nobody"], DAY) == {"key:nobody": (0, 0)}

    run(make_quotas, body)


def test_no_limit_means_unlimited(make_quotas: Callable[[], QuotaCounter]) -> None:
    """A subject without limits is counted and never refused."""

    async def body(quotas: QuotaCounter) -> None:
        for _ in range(5):
            assert (await quotas.take([QuotaLimit("function:g")], DAY)).allowed
        assert await quotas.usage(["function:g"], DAY) == {"function:g": (5, 0)}

    run(make_quotas, body)


def test_a_malformed_day_is_refused(make_quotas: Callable[[], QuotaCounter]) -> None:
    """`day` must be YYYY-MM-DD: anything else is an error, and nothing is counted."""

    async def body(quotas: QuotaCounter) -> None:
        with pytest.raises(ValueError, match="YYYY-MM-DD"):
            await quotas.take([QuotaLimit("key:k1", max_invocations=1)], "yesterday")

    run(make_quotas, body)
