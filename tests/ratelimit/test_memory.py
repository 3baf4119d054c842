"""The in-memory token bucket."""

from __future__ import annotations

import asyncio

import pytest

from donjon.ratelimit import BucketKey, MemoryConcurrencyLimiter, MemoryRateLimiter

K = BucketKey(function="k")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def take(limiter: MemoryRateLimiter, key: BucketKey, count: int, period_s: float) -> bool:
    return asyncio.run(limiter.take(key, count, period_s)).allowed


def test_burst_then_refuse_then_refill() -> None:
    """A bucket of 3/minute allows 3 at once, refuses the 4th, and refills at 1 per 20 s."""
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    assert [take(limiter, K, 3, 60) for _ in range(3)] == [True, True, True]
    refused = asyncio.run(limiter.take(K, 3, 60))
    assert not refused.allowed
    assert 19.9 < refused.retry_after_s <= 20.0
    clock.now += 20
    assert take(limiter, K, 3, 60)
    assert not take(limiter, K, 3, 60)


def test_buckets_are_independent() -> None:
    """Spending one key's bucket leaves another's full."""
    limiter = MemoryRateLimiter(Clock())
    a, b = BucketKey(function="a"), BucketKey(function="b")
    assert take(limiter, a, 1, 60)
    assert not take(limiter, a, 1, 60)
    assert take(limiter, b, 1, 60)


def test_keys_by_principal_function_and_client_are_distinct() -> None:
    """A principal's bucket for a function is not the function's, nor another principal's."""
    limiter = MemoryRateLimiter(Clock())
    keys = [
        BucketKey(function="f"),
        BucketKey(principal="p1", function="f"),
        BucketKey(principal="p2", function="f"),
        BucketKey(principal="p1"),
        BucketKey(client="127.0.0.1"),
    ]
    assert len({str(k) for k in keys}) == len(keys)
    for key in keys:
        assert take(limiter, key, 1, 60)
        assert not take(limiter, key, 1, 60)


def test_a_key_must_name_something() -> None:
    """An empty key would be one bucket for everyone: refused."""
    with pytest.raises(ValueError, match="at least one"):
        BucketKey()


def test_refill_never_exceeds_capacity() -> None:
    """A long idle bucket holds at most `count` tokens."""
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    take(limiter, K, 2, 1)
    clock.now += 3600
    assert [take(limiter, K, 2, 1) for _ in range(3)] == [True, True, False]


def test_take_now_spends_the_same_bucket_as_take() -> None:
    """`take_now` (the gateway's call without a coroutine) shares `take`'s buckets and
    refuses a spent one with the same Retry-After."""
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    assert limiter.take_now(K, 2, 60).allowed
    assert take(limiter, K, 2, 60)
    refused = limiter.take_now(K, 2, 60)
    assert not refused.allowed and 29.9 < refused.retry_after_s <= 30.0
    assert not take(limiter, K, 2, 60)
    clock.now += 30
    assert limiter.take_now(K, 2, 60).allowed


KEYS = [
    BucketKey(principal="a"),
    BucketKey(principal="a", scope="concurrency"),
    BucketKey(principal="a", scope="throttle"),
    BucketKey(principal="a", function="f"),
    BucketKey(function="a"),
    BucketKey(client="a"),
    BucketKey(principal="b"),
    BucketKey(principal="*", scope="node"),
]


def test_the_tables_key_by_parts_exactly_as_by_key() -> None:
    """The memory limiters key their tables by `BucketKey.parts`: equal exactly when the
    keys are, so a key made again finds its bucket and its slots, and keys that differ in
    any field (scope included) never share one."""
    for one in KEYS:
        for other in KEYS:
            assert (one.parts == other.parts) is (one == other)
    limiter = MemoryRateLimiter(Clock())
    for key in KEYS:  # a bucket of one each: the second take of any key is refused
        assert take(limiter, key, 1, 60)
    for key in KEYS:
        again = BucketKey(key.principal, key.function, key.client, key.scope)
        assert again is not key and not take(limiter, again, 1, 60)
    slots = MemoryConcurrencyLimiter()
    held = [slots.try_acquire(key, 1, lease_s=60) for key in KEYS]
    assert all(slot is not None for slot in held)
    remade = [BucketKey(k.principal, k.function, k.client, k.scope) for k in KEYS]
    assert [slots.try_acquire(key, 1, lease_s=60) for key in remade] == [None] * len(KEYS)
    for slot in held:
        assert slot is not None
        slots.release_now(slot)
    assert all(slots.try_acquire(key, 1, lease_s=60) is not None for key in remade)
