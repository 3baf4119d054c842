"""Daily quotas in Redis: the `QuotaCounter` role of the Redis backend (ratelimit/redis.py).

A subject's usage of a day is one hash (`inv`, `ms`) named
`donjon:quota:{DAY}:SUBJECT`; the day in braces keeps a day's keys in one hash
slot. A take checks every subject and counts one invocation for each, or
nothing, in one script (redis_scripts.QUOTA_TAKE). Keys expire two days after
their day ends, from the date itself, and never sooner than a day after their last
count by the server's clock (a node days behind still fills them). A failure is raised,
never guessed past: quotas fail closed (ratelimit/failover.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from donjon.ratelimit import redis_scripts as lua
from donjon.ratelimit.interface import QuotaCounter, QuotaDecision, QuotaLimit

if TYPE_CHECKING:
    from donjon.ratelimit.redis import RedisLimiter

__all__ = ["QUOTA_KEEP_S", "RedisQuotaCounter", "merge_limits"]

#: A day's usage is kept this long after the day ends (`quota show` of yesterday).
QUOTA_KEEP_S = 2 * 86400


def _tighter(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def merge_limits(limits: Sequence[QuotaLimit]) -> list[QuotaLimit]:
    """One limit per subject (the tighter of each measure), in first-seen order: a subject
    named twice is counted once."""
    merged: dict[str, QuotaLimit] = {}
    for limit in limits:
        seen = merged.get(limit.subject)
        if seen is None:
            merged[limit.subject] = limit
        else:
            merged[limit.subject] = QuotaLimit(
                limit.subject,
                _tighter(seen.max_invocations, limit.max_invocations),
                _tighter(seen.max_compute_ms, limit.max_compute_ms),
            )
    return list(merged.values())


def expiry_of(day: str) -> int:
    """Unix seconds when `day`'s usage is dropped; `ValueError` for a malformed day."""
    try:
        start = dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"day must be a UTC date YYYY-MM-DD, not {day[:40]!r}") from None
    return int(start.timestamp()) + 86400 + QUOTA_KEEP_S


class RedisQuotaCounter(QuotaCounter):
    """Daily usage per subject, shared by every node of one Redis."""

    def __init__(self, backend: RedisLimiter) -> None:
        self._backend = backend
        self._take = backend.script(lua.QUOTA_TAKE)
        self._add = backend.script(lua.ADD_COMPUTE)
        self._give_back = backend.script(lua.QUOTA_GIVE_BACK)
        self._usage = backend.script(lua.USAGE)

    async def close(self) -> None:
        """Close the backend's connections (the rates and slots share them)."""
        await self._backend.close()

    def _key(self, day: str, subject: str) -> str:
        return self._backend.key("quota", "{" + day + "}", subject)

    async def take(self, limits: Sequence[QuotaLimit], day: str) -> QuotaDecision:
        expiry = expiry_of(day)
        merged = merge_limits(limits)
        if not merged:
            return QuotaDecision(True)
        args: list[object] = [expiry]
        for limit in merged:
            args += [_or_none(limit.max_invocations), _or_none(limit.max_compute_ms)]
        keys = [self._key(day, limit.subject) for limit in merged]
        reply = await self._backend.run(self._take, keys, args)
        try:
            if int(reply[0]) == 1:
                return QuotaDecision(True)
            _, index, measure, used, limit_ = reply
            subject = merged[int(index) - 1].subject
            text = measure.decode() if isinstance(measure, bytes) else str(measure)
            return QuotaDecision(False, subject, text, int(used), int(limit_))
        except (TypeError, ValueError, IndexError) as e:
            self._backend.fail(e)

    async def give_back(self, subjects: Sequence[str], day: str) -> None:
        expiry_of(day)  # the day is checked as everywhere
        unique = list(dict.fromkeys(subjects))
        if unique:
            await self._backend.run(self._give_back, [self._key(day, s) for s in unique], [])

    async def add_compute(self, subjects: Sequence[str], day: str, compute_ms: int) -> None:
        expiry = expiry_of(day)
        unique = list(dict.fromkeys(subjects))
        if not unique or compute_ms <= 0:
            return
        keys = [self._key(day, s) for s in unique]
        await self._backend.run(self._add, keys, [expiry, int(compute_ms)])

    async def usage(self, subjects: Sequence[str], day: str) -> dict[str, tuple[int, int]]:
        expiry_of(day)  # the day is checked as everywhere
        unique = list(dict.fromkeys(subjects))
        if not unique:
            return {}
        reply = await self._backend.run(self._usage, [self._key(day, s) for s in unique], [])
        try:
            values = [int(v) for v in reply]
            return {s: (values[2 * i], values[2 * i + 1]) for i, s in enumerate(unique)}
        except (TypeError, ValueError, IndexError) as e:
            self._backend.fail(e)


def _or_none(limit: int | None) -> int:
    """A limit as the script reads it: -1 for none."""
    return -1 if limit is None else max(0, int(limit))
