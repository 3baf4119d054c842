"""What the node does when the shared limits store (Redis) is unreachable.

- Rate limits and concurrency fall back to the node's own memory buckets and
  slots: each node still enforces every limit, alone (with N nodes a flood may
  get up to N times a shared limit through, never an unlimited number). The
  alternative, refusing every call, would let a Redis outage take the whole
  platform down; a limit per node is the smaller harm.
- Quotas fail closed: a call whose quota cannot be checked is refused (503,
  `LimiterUnavailable`), because a quota is a promise about money; the compute of
  calls that end in an outage is owed and charged once the store answers.
- A shared slot released in an outage is owed too: given back once the store answers.

`BackendHealth` notices an outage once: the first failure is logged and
reported (`on_change(False, reason)`: the node writes a `limits.unavailable`
audit record, which the monitor raises as an alert), and the store is then
not asked again for `retry_s` (so calls do not each wait for a timeout), one
probe at a time. The first answer after that is logged and reported
(`on_change(True, "")`), and shared limits are back by themselves.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from donjon.ratelimit.interface import (
    BucketKey,
    ConcurrencyLimiter,
    Decision,
    LimiterUnavailable,
    QuotaCounter,
    QuotaDecision,
    QuotaLimit,
    RateLimiter,
    Slot,
)

__all__ = [
    "BackendHealth",
    "FailClosedQuotaCounter",
    "FailoverConcurrencyLimiter",
    "FailoverRateLimiter",
    "LimitsDown",
    "QuotasUnchecked",
]

log = logging.getLogger("donjon.ratelimit")

#: Seconds between attempts to reach the store during an outage.
RETRY_S = 2.0
#: Most (day, subjects) whose compute an outage keeps owed (past it the oldest is dropped).
MAX_OWED = 10_000

OnChange = Callable[[bool, str], Coroutine[Any, Any, None]]
T = TypeVar("T")


class LimitsDown(LimiterUnavailable):
    """A shared limit cannot be checked now (its store is down): 503, come back soon."""

    retry_after_s = 5.0


class QuotasUnchecked(LimitsDown):
    """Quotas cannot be checked (their store is down): what a caller is told, naming no
    URL, host or client error (a public trigger's caller is anyone); the operator has the
    cause in the log, the `limits.unavailable` record and alert, and `donjon doctor`."""

    def __init__(self) -> None:
        super().__init__(
            "quotas cannot be checked now: the shared limits store is unavailable",
            hint="retry in a few seconds; calls under a quota are refused rather than "
            "counted nowhere",
        )


class BackendHealth:
    """Whether the shared store answers: one notice per outage, and one per recovery."""

    def __init__(
        self,
        name: str,
        on_change: OnChange | None = None,
        *,
        retry_s: float = RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._on_change = on_change
        self._retry_s = retry_s
        self._clock = clock
        #: None while the store answers; else when it may be asked again.
        self._down_until: float | None = None
        self._probing = False
        #: The reason of the outage in progress ("" when none).
        self.reason = ""
        #: Outages noticed since start.
        self.outages = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def up(self) -> bool:
        return self._down_until is None

    def usable(self) -> bool:
        """May this call ask the store? Always while it answers; during an outage, one
        call at a time once every `retry_s` (the probe), the others go without."""
        if self._down_until is None:
            return True
        if self._probing or self._clock() < self._down_until:
            return False
        self._probing = True
        return True

    async def ask(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call` the store, noting whether it answered; `LimiterUnavailable` when it may
        not be asked now (an outage) or failed."""
        if not self.usable():
            raise LimitsDown(
                f"{self.name} is unavailable ({self.reason or 'no answer'})",
                hint="limits that must be shared are refused rather than counted nowhere; "
                "retry in a few seconds, and see `donjon doctor` on the node",
            )
        try:
            result = await call()
        except LimiterUnavailable as e:
            self.failed(e)
            raise
        except BaseException:  # cancelled, or a bad argument: not the store's fault
            self._probing = False
            raise
        self.answered()
        return result

    def failed(self, error: LimiterUnavailable) -> None:
        """The store failed this call: the first failure of an outage is reported."""
        self._probing = False
        self._down_until = self._clock() + self._retry_s
        if self.reason:
            return
        self.reason = error.message
        self.outages += 1
        log.error(
            "limits: %s is unavailable (%s); rates and concurrency are enforced by this "
            "node alone, quotas refuse calls, until it answers again",
            self.name,
            error.message,
        )
        self._report(False, error.message)

    def answered(self) -> None:
        """The store answered: the end of an outage, if there was one, is reported."""
        if self._down_until is None:
            return
        self._down_until = None
        self._probing = False
        self.reason = ""
        log.warning("limits: %s answers again; limits are shared again", self.name)
        self._report(True, "")

    def _report(self, available: bool, reason: str) -> None:
        if self._on_change is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._on_change(available, reason))
        except RuntimeError:  # no loop (a test's synchronous use): nothing to report to
            return
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("limits: reporting the store's state failed: %r", task.exception())

    async def settle(self) -> None:
        """Wait for the reports under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class FailoverRateLimiter(RateLimiter):
    """The shared buckets while the store answers; the node's own buckets when not."""

    def __init__(self, shared: RateLimiter, fallback: RateLimiter, health: BackendHealth) -> None:
        self.shared = shared
        self.fallback = fallback
        self.health = health

    async def take(
        self, key: BucketKey, count: int, period_s: float, burst: int | None = None
    ) -> Decision:
        try:
            return await self.health.ask(lambda: self.shared.take(key, count, period_s, burst))
        except LimiterUnavailable:
            return await self.fallback.take(key, count, period_s, burst)

    async def give_back(
        self, key: BucketKey, count: int, period_s: float, burst: int | None = None
    ) -> None:
        """To the buckets in force now (the shared ones, else the node's own)."""
        try:
            await self.health.ask(lambda: self.shared.give_back(key, count, period_s, burst))
        except LimiterUnavailable:
            await self.fallback.give_back(key, count, period_s, burst)

    async def close(self) -> None:
        await self.health.settle()
        await self.shared.close()
        await self.fallback.close()


class FailoverConcurrencyLimiter(ConcurrencyLimiter):
    """Shared slots while the store answers; the node's own slots when not. A slot goes
    back to whichever gave it: a shared one whose release found the store down is owed,
    and given back before the next shared acquire or count (else a blip of the store held
    it, on every node, until its lease ended)."""

    def __init__(
        self, shared: ConcurrencyLimiter, fallback: ConcurrencyLimiter, health: BackendHealth
    ) -> None:
        self.shared = shared
        self.fallback = fallback
        self.health = health
        #: Tokens of the slots the fallback gave (released there).
        self._local: set[str] = set()
        #: Shared slots released while the store was down (at most those held then).
        self._owed: list[Slot] = []

    async def _give_back_owed(self) -> None:
        """Release the owed slots on the store (`LimiterUnavailable` if it is still down)."""
        while self._owed:
            slot = self._owed.pop()
            try:
                await self.health.ask(functools.partial(self.shared.release, slot))
            except BaseException:
                self._owed.append(slot)
                raise

    async def acquire(
        self, key: BucketKey, cap: int, *, wait_s: float, lease_s: float
    ) -> Slot | None:
        deadline = time.monotonic() + max(0.0, wait_s)
        try:
            await self._give_back_owed()
            return await self.health.ask(
                lambda: self.shared.acquire(key, cap, wait_s=wait_s, lease_s=lease_s)
            )
        except LimiterUnavailable:
            left = max(0.0, deadline - time.monotonic())
            slot = await self.fallback.acquire(key, cap, wait_s=left, lease_s=lease_s)
            if slot is not None:
                self._local.add(slot.token)
            return slot

    async def release(self, slot: Slot) -> None:
        if slot.token in self._local:
            self._local.discard(slot.token)
            await self.fallback.release(slot)
            return
        try:
            await self.health.ask(lambda: self.shared.release(slot))
        except LimiterUnavailable:
            self._owed.append(slot)  # given back when the store answers (or by its lease)

    async def held(self, key: BucketKey) -> int:
        try:
            await self._give_back_owed()
            return await self.health.ask(lambda: self.shared.held(key))
        except LimiterUnavailable:
            return await self.fallback.held(key)


class FailClosedQuotaCounter(QuotaCounter):
    """Quotas in the shared store, refused (`LimiterUnavailable`) while it is unreachable.

    A finished call's compute that cannot be added then is owed, not dropped (the call
    ran: its compute is spent money), and added before the next take, charge or usage
    once the store answers. A charge whose answer never came may have been counted: owed
    too, it is counted twice, over and never under."""

    def __init__(self, shared: QuotaCounter, health: BackendHealth) -> None:
        self.shared = shared
        self.health = health
        #: Compute (ms) owed by (day, subjects), in the order owed.
        self._owed: dict[tuple[str, tuple[str, ...]], int] = {}

    def _owe(self, day: str, subjects: tuple[str, ...], compute_ms: int) -> None:
        key = (day, subjects)
        if key not in self._owed and len(self._owed) >= MAX_OWED:
            (old_day, old), ms = next(iter(self._owed.items()))
            del self._owed[(old_day, old)]
            log.error("limits: %d ms of compute owed by %s on %s dropped", ms, old, old_day)
        self._owed[key] = self._owed.get(key, 0) + compute_ms

    async def _charge_owed(self) -> None:
        """Add the owed compute to the store (`LimiterUnavailable` if it is still down)."""
        while self._owed:
            (day, subjects), ms = next(iter(self._owed.items()))
            del self._owed[(day, subjects)]
            try:
                await self.health.ask(functools.partial(self.shared.add_compute, subjects, day, ms))
            except BaseException:
                self._owe(day, subjects, ms)
                raise

    async def take(self, limits: Sequence[QuotaLimit], day: str) -> QuotaDecision:
        try:
            await self._charge_owed()
            return await self.health.ask(lambda: self.shared.take(limits, day))
        except LimiterUnavailable as e:
            raise QuotasUnchecked() from e

    async def give_back(self, subjects: Sequence[str], day: str) -> None:
        """Uncounted in the store; while it is down the unit stays counted (over, never
        under: the quotas are refused then anyway)."""
        try:
            await self.health.ask(lambda: self.shared.give_back(subjects, day))
        except LimiterUnavailable:
            log.warning("limits: an invocation refused after its quota was taken stays counted")

    async def add_compute(self, subjects: Sequence[str], day: str, compute_ms: int) -> None:
        try:
            await self._charge_owed()
            await self.health.ask(lambda: self.shared.add_compute(subjects, day, compute_ms))
        except LimiterUnavailable:
            if subjects and compute_ms > 0:
                self._owe(day, tuple(subjects), compute_ms)

    async def usage(self, subjects: Sequence[str], day: str) -> dict[str, tuple[int, int]]:
        try:
            await self._charge_owed()
            return await self.health.ask(lambda: self.shared.usage(subjects, day))
        except LimiterUnavailable as e:
            raise QuotasUnchecked() from e
