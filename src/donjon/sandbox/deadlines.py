"""Timeouts of calls in flight, on one timer a loop instead of one timer each (issue 14).

Every warm call runs under a timeout (the gateway's backstop past the deadline
its supervisor enforces), and a call that waits for a free slot waits under
another. `asyncio.timeout` arms a timer of the loop's for each, and under uvloop
arming and cancelling one costs about 2.3 µs (a libuv timer started, stopped and
closed), 3.4 µs with the rest of `asyncio.timeout`: about 7 µs of a warm request.
Almost none of those timers ever fires.

`Deadlines.timeout(delay)` does what `asyncio.timeout(delay)` does (the task is
cancelled when the delay has passed, and the cancellation comes out of the
`async with` as `TimeoutError`; a cancellation from elsewhere stays one), with
the deadlines kept in buckets of `TICK_S`: one dict entry a timeout, dropped when
its block ends, and one loop timer for the earliest bucket, moved only when a
deadline comes before it. A timeout so fires between its delay and one tick
after it, never before: fine for deadlines of a second and more (a call's grace
past its own deadline, a bounded wait for a slot).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import weakref
from types import TracebackType

__all__ = ["TICK_S", "Deadlines", "deadlines"]

#: The width of a bucket: how late past its delay a timeout may fire.
TICK_S = 0.01


class Deadlines:
    """The timeouts of one event loop's tasks, fired by one timer (see the module)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: Bucket number -> the timeouts due in it (a dict kept in insertion order).
        self._buckets: dict[int, dict[_Timeout, None]] = {}
        #: Bucket numbers that had timeouts, smallest first (each once: `_queued`); one
        #: emptied before its time stays until then. So it holds at most the longest
        #: delay's worth of ticks, however many calls come and go.
        self._due: list[int] = []
        self._queued: set[int] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_bucket = math.inf

    def timeout(self, delay: float) -> _Timeout:
        """An async context manager: `TimeoutError` out of its block if it runs `delay`
        seconds or more (on the loop's clock), as `asyncio.timeout(delay)`."""
        return _Timeout(self, self._loop.time() + delay)

    def __len__(self) -> int:
        """The timeouts armed now."""
        return sum(len(b) for b in self._buckets.values())

    def _arm(self, timeout: _Timeout) -> None:
        number = math.ceil(timeout.when / TICK_S)
        timeout.bucket = number
        bucket = self._buckets.get(number)
        if bucket is None:
            bucket = self._buckets[number] = {}
            if number not in self._queued:
                self._queued.add(number)
                heapq.heappush(self._due, number)
            if number < self._timer_bucket:
                self._set_timer(number)
        bucket[timeout] = None

    def _disarm(self, timeout: _Timeout) -> None:
        bucket = self._buckets.get(timeout.bucket)
        if bucket is not None:
            bucket.pop(timeout, None)
            if not bucket:
                del self._buckets[timeout.bucket]  # its number stays in `_due`: skipped

    def _set_timer(self, number: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_bucket = number
        self._timer = self._loop.call_at(number * TICK_S, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_bucket = None, math.inf
        now = self._loop.time()
        due, buckets = self._due, self._buckets
        while due:
            number = due[0]
            if number in buckets and number * TICK_S > now:
                self._set_timer(number)
                return
            heapq.heappop(due)
            self._queued.discard(number)
            for timeout in buckets.pop(number, ()):  # (none: emptied before its time)
                timeout.expire()


class _Timeout:
    """One `Deadlines.timeout`: asyncio's `Timeout` state machine, on a shared timer."""

    __slots__ = ("_cancelling", "_deadlines", "_expired", "_task", "bucket", "when")

    def __init__(self, deadlines: Deadlines, when: float) -> None:
        self._deadlines = deadlines
        self.when = when
        self.bucket = 0
        self._expired = False
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0

    async def __aenter__(self) -> _Timeout:
        task = asyncio.current_task(self._deadlines._loop)
        if task is None:
            raise RuntimeError("a timeout must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._deadlines._arm(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._deadlines._disarm(self)  # (an expired one was taken out as it fired)
        if not self._expired:
            return
        # As asyncio's Timeout: the cancellation it made becomes TimeoutError, unless
        # the task was also cancelled from elsewhere meanwhile. (`_task` is set: it expired.)
        task = self._task
        if (
            task is not None
            and task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc

    def expired(self) -> bool:
        """Whether its delay passed while its block ran (it then cancelled the task)."""
        return self._expired

    def expire(self) -> None:
        if self._expired or self._task is None:
            return
        self._expired = True
        self._task.cancel()


_OF_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = (
    weakref.WeakKeyDictionary()
)


def deadlines() -> Deadlines:
    """The running loop's `Deadlines` (made on first use; callers keep it)."""
    loop = asyncio.get_running_loop()
    found = _OF_LOOP.get(loop)
    if found is None:
        found = _OF_LOOP[loop] = Deadlines(loop)
    return found
