"""Throttles: a temporary, tighter rate limit the monitor puts on one caller.

A throttle names a subject (a principal such as `key:0123...`, a source
address, or a function) and a rate (`10/minute` by default,
DONJON_MONITOR_THROTTLE). While it lasts (DONJON_MONITOR_THROTTLE_S, an hour
by default) every request of that subject spends a token of its own bucket in
the node's rate limiter (`BucketKey(..., scope="throttle")`), on top of every
other limit; a spent bucket answers 429 with Retry-After. It ends by itself
when its time is up, or when a person lifts it (`donjon throttle rm SUBJECT`,
audited `response.unthrottle`).

Throttles are checked from the node's memory (the hot path pays one truthiness test
while none is set) and kept in the database (store/throttles.py): a restart loads those
not yet ended. Before, a restart lifted them, an admin's too, and a throttled key's
holder had only to wait for the next upgrade. Each throttle's bucket starts full again
after a restart, as every rate limit's does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from donjon.ratelimit import BucketKey, RateLimiter, RateLimitError
from donjon.store.throttles import ThrottleRow, ThrottleStore

__all__ = ["MAX_THROTTLES", "Throttle", "ThrottleKind", "Throttled", "Throttles"]

ThrottleKind = Literal["principal", "source", "function"]
_KINDS: dict[str, ThrottleKind] = {
    "principal": "principal",
    "source": "source",
    "function": "function",
}
_UNITS = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}
#: At most this many throttles at once: the oldest source's (else the oldest) is lifted
#: to make room.
MAX_THROTTLES = 10_000


class Throttled(RateLimitError):
    """A request of a throttled subject, over the throttle's rate (429)."""

    title = "Throttled"


@dataclass(frozen=True, slots=True)
class Throttle:
    kind: ThrottleKind
    id: str
    #: The throttle's rate: `count` requests per `period_s`.
    count: int
    period_s: float
    since: float
    until: float
    reason: str
    #: The `alert.raised` record it answers (None: set by hand).
    alert_seq: int | None

    @property
    def subject(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def rate(self) -> str:
        """`10/minute` (as DONJON_MONITOR_THROTTLE reads), or `count/Ns`."""
        unit = _UNITS.get(self.period_s, f"{self.period_s:g}s")
        return f"{self.count}/{unit}"

    def bucket(self) -> BucketKey:
        if self.kind == "principal":
            return BucketKey(principal=self.id, scope="throttle")
        if self.kind == "source":
            return BucketKey(client=self.id, scope="throttle")
        return BucketKey(function=self.id, scope="throttle")


class Throttles:
    """The throttles in force on this node, by subject. Runs on the event loop only."""

    def __init__(
        self,
        limiter: RateLimiter,
        clock: Callable[[], float] = time.time,
        store: ThrottleStore | None = None,
    ) -> None:
        self._limiter = limiter
        self._clock = clock
        self._store = store
        self._by_subject: dict[tuple[str, str], Throttle] = {}
        #: The same dict, read-only: its truth (whether any throttle is set) is what the
        #: hot path asks, three times a request, tested in C where `bool(self)` is a call.
        self.in_force: Mapping[tuple[str, str], Throttle] = self._by_subject
        for row in store.in_force(clock()) if store is not None else ():
            kind = _KINDS.get(row.kind)
            if kind is not None:
                self.add(_throttle(row, kind))

    async def keep(self, throttle: Throttle) -> None:
        """Store `throttle` (in the transaction of its audit record, when one is pending:
        store/audit_outbox.py), so that a restart keeps it."""
        if self._store is not None:
            await asyncio.to_thread(self._store.put, _row(throttle))

    async def forget(self, throttle: Throttle) -> None:
        """Delete the stored `throttle` (not one of its subject's set since)."""
        if self._store is not None:
            await asyncio.to_thread(self._store.remove, throttle.kind, throttle.id, throttle.since)

    def __bool__(self) -> bool:
        return bool(self._by_subject)

    def add(self, throttle: Throttle) -> Throttle | None:
        """Set `throttle` (replacing the subject's, if any); the one it replaced."""
        key = (throttle.kind, throttle.id)
        old = self._by_subject.pop(key, None)
        while len(self._by_subject) >= MAX_THROTTLES:
            # The oldest source's first: addresses are what an attacker has by the
            # thousand, and a flood of them must not lift its stolen key's throttle.
            sources = (k for k in self._by_subject if k[0] == "source")
            del self._by_subject[next(sources, None) or next(iter(self._by_subject))]
        self._by_subject[key] = throttle
        return old

    def get(self, kind: str, id_: str) -> Throttle | None:
        """The subject's throttle in force now, if any."""
        throttle = self._by_subject.get((kind, id_))
        return throttle if throttle is not None and throttle.until > self._clock() else None

    def remove(self, kind: str, id_: str) -> Throttle | None:
        """Lift the subject's throttle; the one lifted (None: there was none in force)."""
        throttle = self._by_subject.pop((kind, id_), None)
        if throttle is not None and throttle.until <= self._clock():
            return None  # it had ended already
        return throttle

    def active(self) -> list[Throttle]:
        """The throttles in force now, oldest first (ended ones are dropped)."""
        now = self._clock()
        for key, throttle in list(self._by_subject.items()):
            if throttle.until <= now:
                del self._by_subject[key]
        return sorted(self._by_subject.values(), key=lambda t: t.since)

    async def check(self, kind: ThrottleKind, id_: str) -> None:
        """Spend a token of the subject's throttle bucket, if it has one; `Throttled` if spent."""
        throttle = self._by_subject.get((kind, id_))
        if throttle is None:
            return
        if throttle.until <= self._clock():
            del self._by_subject[(kind, id_)]
            return
        decision = await self._limiter.take(throttle.bucket(), throttle.count, throttle.period_s)
        if not decision.allowed:
            raise Throttled(
                f"{throttle.subject} is throttled to {throttle.rate} by an automatic response"
                + (f" to alert {throttle.alert_seq}" if throttle.alert_seq is not None else ""),
                retry_after_s=decision.retry_after_s,
            )


def _row(throttle: Throttle) -> ThrottleRow:
    t = throttle
    return ThrottleRow(t.kind, t.id, t.count, t.period_s, t.since, t.until, t.reason, t.alert_seq)


def _throttle(row: ThrottleRow, kind: ThrottleKind) -> Throttle:
    return Throttle(
        kind, row.subject, row.count, row.period_s, row.since, row.until, row.reason, row.alert_seq
    )
