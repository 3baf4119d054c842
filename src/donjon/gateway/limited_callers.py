"""Callers that a rate bucket or a daily quota of their own refused lately, until its
Retry-After.

Their calls are answered 429 at admission (gateway/rate_buckets.py, quota_check.py) and
never queue for a sandbox. The early shed (early_shed.py) counts the invoke heads on their way to
admission as calls queued ahead of the next one; a caller over its own rate, sending many
heads at once, would make other callers' calls of the same function look queued behind
calls that will never run, and have them shed with 503. So its heads do not count while
it is known to be over its rate. Known per node, from its own refusals: another node's
refusals (a shared Redis bucket) are learnt at this node's first.
"""

from __future__ import annotations

import time

__all__ = ["MAX_KEPT", "LimitedCallers"]

#: Callers (or caller and function pairs) kept at most; past it the expired go, then
#: the oldest (which then count again until their next refusal).
MAX_KEPT = 4096


class LimitedCallers:
    """Until when each caller, and each caller's share of a function, is over its rate."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        #: By caller label, or by "label function" for a caller's share of one function.
        self._until: dict[str, float] = {}

    def refused(self, label: str, function: str | None, retry_after_s: float) -> None:
        """A bucket or quota of `label`'s own refused its call (of `function`: its share of
        that function's rate; None: its own rate or quota, for every function) for
        `retry_after_s`."""
        until = self._until
        key = label if function is None else f"{label} {function}"
        until.pop(key, None)  # kept in the order of the latest refusal
        if len(until) >= MAX_KEPT:
            now = time.monotonic()
            for expired in [k for k, end in until.items() if end <= now]:
                del until[expired]
            while len(until) >= MAX_KEPT:
                del until[next(iter(until))]
        until[key] = time.monotonic() + retry_after_s

    def limited(self, label: str, function: str) -> bool:
        """Whether `label`'s call of `function` would be refused by a limit of its own."""
        until = self._until
        if not until:
            return False
        now = time.monotonic()
        return until.get(label, 0.0) > now or until.get(f"{label} {function}", 0.0) > now
