"""The in-memory token bucket."""

from __future__ import annotations

from donjon.ratelimit import MemoryRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refuse_then_refill() -> None:
    """A bucket of 3/minute allows 3 at once, refuses the 4th, and refills at 1 per 20 s."""
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    assert [limiter.take("k", 3, 60).allowed for _ in range(3)] == [True, True, True]
    refused = limiter.take("k", 3, 60)
    assert not refused.allowed
    assert 19.9 < refused.retry_after_s <= 20.0
    clock.now += 20
    assert limiter.take("k", 3, 60).allowed
    assert not limiter.take("k", 3, 60).allowed


def test_buckets_are_independent() -> None:
    """Spending one key's bucket leaves another's full."""
    limiter = MemoryRateLimiter(Clock())
    assert limiter.take("a", 1, 60).allowed
    assert not limiter.take("a", 1, 60).allowed
    assert limiter.take("b", 1, 60).allowed


def test_refill_never_exceeds_capacity() -> None:
    """A long idle bucket holds at most `count` tokens."""
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    limiter.take("k", 2, 1)
    clock.now += 3600
    assert [limiter.take("k", 2, 1).allowed for _ in range(3)] == [True, True, False]
