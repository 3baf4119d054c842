"""API keys that a rate bucket or a daily quota of their own refused lately.

Their calls are answered 429 at admission (gateway/rate_buckets.py, quota_check.py) and
never queue for a sandbox. The early shed (early_shed.py) counts the invoke heads on
their way to admission as calls queued ahead of the next one; a key over its own limit,
sending many heads at once, would make other callers' calls of the same function look
queued behind calls that will never run, and have them shed with 503. So its heads do
not count while it is recorded here.

A record lasts `HOLD_S` past the refusal's Retry-After, and at most `MAX_HOLD_S` in all;
each further refusal renews it. Held past the Retry-After, a key that keeps sending
past its rate is not counted again at each refill (up to its burst of those heads
would then queue, and are judged at admission); capped, a quota an admin raises, or a
rate of a few a day, leaves its heads uncounted for minutes, not a day. Any error here
only under-counts, which sends calls to admission to be judged, as before the early
shed. Known per node, from its own refusals: another node's refusals (a shared Redis
bucket) are learnt at this node's first. Only API keys are recorded: the early shed
verifies nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["HOLD_S", "MAX_HOLD_S", "MAX_KEPT", "LimitedCallers"]

#: Keys (or key and function pairs) kept at most; past it the least lately refused go
#: (they count again until their next refusal).
MAX_KEPT = 4096
#: How long past its Retry-After a refusal is remembered, and how long at most in all.
HOLD_S = 60.0
MAX_HOLD_S = 300.0


class LimitedCallers:
    """Until when each key, and each key's share of a function, is over its limit."""

    __slots__ = ("_clock", "_until")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: By (key label, None) for its own rate or quota, (key label, function) for its
        #: share of one function's rate; in the order of their latest refusal.
        self._until: dict[tuple[str, str | None], float] = {}

    def refused(self, label: str, function: str | None, retry_after_s: float) -> None:
        """A limit of key `label`'s own refused its call (of `function`: its share of
        that function's rate; None: its own rate or quota, for every function), asking
        it to retry after `retry_after_s`."""
        until = self._until
        key = (label, function)
        until.pop(key, None)
        while len(until) >= MAX_KEPT:
            del until[next(iter(until))]  # the least lately refused
        hold = min(max(retry_after_s, 0.0) + HOLD_S, MAX_HOLD_S)
        until[key] = self._clock() + hold

    def limited(self, label: str, function: str) -> bool:
        """Whether key `label`'s call of `function` is held to be refused by a limit of
        its own."""
        until = self._until
        if not until:
            return False
        now = self._clock()
        return until.get((label, None), 0.0) > now or until.get((label, function), 0.0) > now
