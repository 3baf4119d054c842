"""Daily quota usage in process memory, persisted behind the hot path.

`take` and `add_compute` only touch dictionaries on the event loop. What they
count since the last write is written to the database (`quota_usage`, as
increments) every `flush_s` (1 s by default) and when the node stops; a node
that starts loads the day's usage back, so a restart does not reset a day.
Each write also reads the day's totals back, so the usage other nodes sharing
the database wrote is seen within a flush interval (each node still decides
alone: for exact limits across nodes, use the Redis backend).

What a crash can lose: a node killed with SIGKILL (or a power cut) loses the
usage it counted since its last write, at most one flush interval of its calls.
Those calls were let through against the quota as it stood; the next start
counts from the last write. That is accepted: a quota bounds a day's bill, and
one second of calls (itself bounded by the rate limits and concurrency caps)
is noise at that scale, while writing on every call would put a database write
on the hot path. Days before yesterday are dropped from memory, and rows older
than `keep_days` from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence

from donjon.ratelimit.interface import QuotaCounter, QuotaDecision, QuotaLimit
from donjon.store.quotas import QuotaStore

__all__ = ["FLUSH_S", "KEEP_DAYS", "MemoryQuotaCounter", "utc_day"]

log = logging.getLogger("donjon")

#: How often the counts are written to the database (and the totals read back).
FLUSH_S = 1.0
#: Days of usage kept in the database (today included).
KEEP_DAYS = 8
#: With nothing to write, the day's totals are still read back this often (other nodes).
_READ_BACK_S = 10.0

_ALLOWED = QuotaDecision(True)
#: What a subject not yet counted on a day has used: (invocations, compute ms).
_NONE_USED = (0, 0)


def utc_day(at: float | None = None) -> str:
    """The UTC date of `at` (default now) as YYYY-MM-DD."""
    return dt.datetime.fromtimestamp(time.time() if at is None else at, dt.UTC).strftime("%Y-%m-%d")


def _write(
    store: QuotaStore, day: str, deltas: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """Add `deltas` to `day`'s rows, then read the day's totals (every node's) back."""
    if deltas:
        store.add_usage(day, deltas)
    return store.usage(day)


def _days_before(day: str, n: int) -> str:
    return (dt.date.fromisoformat(day) - dt.timedelta(days=n)).isoformat()


class _Day:
    """One day's usage: `counts` is what decisions read (stored totals plus everything
    counted here since); `pending` is what has not been written yet."""

    __slots__ = ("counts", "pending")

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}
        self.pending: dict[str, list[int]] = {}


class MemoryQuotaCounter(QuotaCounter):
    """Counts on the loop; `start` loads today and starts the writer, `close` writes the rest."""

    def __init__(
        self,
        store: QuotaStore | None = None,
        *,
        flush_s: float = FLUSH_S,
        keep_days: int = KEEP_DAYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._flush_s = flush_s
        self._keep_days = max(2, keep_days)
        self._clock = clock
        self._days: dict[str, _Day] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._last_read = 0.0
        self._pruned_day = ""

    def _day(self, day: str) -> _Day:
        found = self._days.get(day)
        if found is None:
            found = self._days[_checked_day(day)] = _Day()
        return found

    async def take(self, limits: Sequence[QuotaLimit], day: str) -> QuotaDecision:
        counts = self._day(day).counts
        for limit in limits:  # every limit is checked before anything is counted
            # Not yet counted today is 0 used (before, skipped: a quota of 0 let one through).
            used = counts.get(limit.subject, _NONE_USED)
            if limit.max_invocations is not None and used[0] >= limit.max_invocations:
                return QuotaDecision(
                    False, limit.subject, "invocations", used[0], limit.max_invocations
                )
            if limit.max_compute_ms is not None and used[1] >= limit.max_compute_ms:
                return QuotaDecision(
                    False, limit.subject, "compute-seconds", used[1], limit.max_compute_ms
                )
        self._count(day, [limit.subject for limit in limits], 1, 0)
        return _ALLOWED

    async def give_back(self, subjects: Sequence[str], day: str) -> None:
        counts = self._day(day).counts
        # Only what is counted: a day's usage read back from the store since (another
        # node's) never goes below zero here either.
        self._count(day, [s for s in subjects if counts.get(s, [0])[0] > 0], -1, 0)

    async def add_compute(self, subjects: Sequence[str], day: str, compute_ms: int) -> None:
        if compute_ms > 0:
            self._count(day, subjects, 0, int(compute_ms))

    def _count(self, day: str, subjects: Sequence[str], calls: int, ms: int) -> None:
        mem = self._day(day)
        for subject in subjects:
            for book in (mem.counts, mem.pending):
                row = book.get(subject)
                if row is None:
                    book[subject] = [calls, ms]
                else:
                    row[0] += calls
                    row[1] += ms

    async def usage(self, subjects: Sequence[str], day: str) -> dict[str, tuple[int, int]]:
        counts = self._days[day].counts if day in self._days else {}
        if not counts:
            _checked_day(day)
        out: dict[str, tuple[int, int]] = {}
        for subject in subjects:
            row = counts.get(subject)
            out[subject] = (row[0], row[1]) if row is not None else (0, 0)
        return out

    # -- persistence ---------------------------------------------------------------

    async def load(self, day: str | None = None) -> None:
        """Read `day`'s (default today's) stored usage into memory (at start)."""
        if self._store is None:
            return
        day = day or utc_day(self._clock())
        totals = await asyncio.to_thread(self._store.usage, day)
        self._merge(day, totals)

    def _merge(self, day: str, totals: dict[str, tuple[int, int]]) -> None:
        """counts = what the database holds + what is counted here and not written yet."""
        mem = self._day(day)
        counts: dict[str, list[int]] = {s: [c, ms] for s, (c, ms) in totals.items()}
        for subject, (calls, ms) in mem.pending.items():
            row = counts.setdefault(subject, [0, 0])
            row[0] += calls
            row[1] += ms
        mem.counts = counts

    async def flush(self) -> None:
        """Write what was counted since the last write; read the totals back; prune."""
        if self._store is None:
            return
        async with self._lock:
            today = utc_day(self._clock())
            now = time.monotonic()
            read_back = now - self._last_read >= _READ_BACK_S
            for day in sorted({*self._days, today}):
                mem = self._day(day)
                deltas = {s: (r[0], r[1]) for s, r in mem.pending.items()}
                if not deltas and not read_back:
                    continue
                mem.pending = {}
                try:
                    totals = await asyncio.to_thread(_write, self._store, day, deltas)
                except Exception:
                    self._restore(day, deltas)
                    raise
                self._merge(day, totals)
            if read_back:
                self._last_read = now
            yesterday = _days_before(today, 1)
            for day in [d for d in self._days if d < yesterday and not self._days[d].pending]:
                del self._days[day]
            if self._pruned_day != today:
                await asyncio.to_thread(self._store.prune, _days_before(today, self._keep_days - 1))
                self._pruned_day = today

    def _restore(self, day: str, deltas: dict[str, tuple[int, int]]) -> None:
        """Counted, not written: kept for the next write (counts already hold them)."""
        pending = self._day(day).pending
        for subject, (calls, ms) in deltas.items():
            row = pending.setdefault(subject, [0, 0])
            row[0] += calls
            row[1] += ms

    def start(self) -> None:
        """Start writing every `flush_s` (call `load` first)."""
        if self._task is None and self._store is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="quota-usage")

    async def close(self) -> None:
        """Stop the writer and write what is left: a stopped node loses nothing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("writing the last quota usage failed")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            try:
                await self.flush()
            except Exception:  # a busy database: the counts are kept for the next write
                log.exception("writing quota usage failed")


def _checked_day(day: str) -> str:
    """`day` if it is a UTC date `YYYY-MM-DD`; `ValueError` if not (nothing is counted)."""
    try:
        if len(day) == 10:
            dt.datetime.strptime(day, "%Y-%m-%d")
            return day
    except ValueError:
        pass
    raise ValueError(f"day must be a UTC date YYYY-MM-DD, not {day[:40]!r}")
