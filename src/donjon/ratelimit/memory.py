"""Token buckets in process memory: one node, no I/O on the hot path.

`take_now` is `take` without the coroutine: the gateway calls it directly when
the node's limiter is this one (a take never waits), and awaits `take` when it
is a shared backend's (gateway/rate_buckets.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from donjon.ratelimit.interface import BucketKey, Decision, RateLimiter

__all__ = ["MemoryRateLimiter"]

_MAX_KEYS = 100_000


class MemoryRateLimiter(RateLimiter):
    """Buckets refill continuously at count/period up to `burst` (None: count)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # key (its `parts`) -> (tokens, stamp, capacity, rate per second)
        self._buckets: dict[tuple[object, ...], tuple[float, float, float, float]] = {}

    async def take(
        self, key: BucketKey, count: int, period_s: float, burst: int | None = None
    ) -> Decision:
        return self.take_now(key, count, period_s, burst)

    def take_now(
        self, key: BucketKey, count: int, period_s: float, burst: int | None = None
    ) -> Decision:
        """`take`, answered at once (this backend never waits)."""
        now = self._clock()
        rate = count / period_s
        capacity = float(burst if burst is not None else count)
        parts = key.parts
        tokens, stamp, _, _ = self._buckets.get(parts, (capacity, now, capacity, rate))
        tokens = min(capacity, tokens + (now - stamp) * rate)
        if tokens >= 1.0:
            tokens -= 1.0
            self._buckets[parts] = (tokens, now, capacity, rate)
            if len(self._buckets) > _MAX_KEYS:
                self._forget_refilled(now)
            return Decision(True, 0.0, int(tokens), (capacity - tokens) / rate)
        self._buckets[parts] = (tokens, now, capacity, rate)
        return Decision(False, (1.0 - tokens) / rate, 0, (capacity - tokens) / rate)

    async def give_back(
        self, key: BucketKey, count: int, period_s: float, burst: int | None = None
    ) -> None:
        found = self._buckets.get(key.parts)
        if found is None:  # refilled and forgotten since: full
            return
        now = self._clock()
        tokens, stamp, capacity, rate = found
        tokens = min(capacity, tokens + (now - stamp) * rate + 1.0)
        self._buckets[key.parts] = (tokens, now, capacity, rate)

    def _forget_refilled(self, now: float) -> None:
        """Drop buckets that have refilled completely: they hold no state."""
        for key, (tokens, stamp, capacity, rate) in list(self._buckets.items()):
            if tokens + (now - stamp) * rate >= capacity:
                del self._buckets[key]
