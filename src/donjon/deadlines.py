"""Timeouts and timers of the hot path on one loop timer, not one each (issue 14).

Every warm call runs under a timeout (the gateway's backstop past the deadline
its supervisor enforces), a call that waits for a free slot waits under
another, and every answer on a kept-alive connection arms its idle timer.
`asyncio.timeout` and `loop.call_later` each arm a timer of the loop's, and under
uvloop arming and cancelling one costs about 2.3 µs (a libuv timer started,
stopped and closed), 3.4 µs with the rest of `asyncio.timeout`. Almost none of
those timers ever fires.

`Deadlines` keeps them in buckets of `TICK_S`: one dict entry each, dropped when
cancelled, and one loop timer for the earliest bucket, moved only when a new one
comes before it. So they fire between their delay and one tick after it, never
before: fine for delays of a second and more (a call's grace past its own
deadline, a bounded wait for a slot, a connection's idle time). Two of them due
within one tick of each other may fire in either order, and together: nested,
the outer one may then win where `asyncio.timeout`'s inner one would.

- `timeout(delay)` does what `asyncio.timeout(delay)` does: the task is cancelled
  once the delay has passed, and the cancellation comes out of the `async with`
  as `TimeoutError`; a cancellation from elsewhere stays one.
- `call_later(delay, callback)` as the loop's, for a callback that may come late:
  an exception it raises goes to the loop's exception handler, as the loop's own.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import weakref
from collections.abc import Callable
from types import TracebackType

__all__ = ["TICK_S", "Alarm", "Deadlines", "deadlines"]

#: The width of a bucket: how late past its delay a timer may fire.
TICK_S = 0.01
#: Below any loop clock's resolution: a bucket's end computed as `number * TICK_S` may
#: come out a hair past the clock's reading at that very moment (uvloop's clock counts
#: milliseconds), which must not make the timer re-arm itself at once until it moves.
_SLACK_S = 1e-9
#: Ticks queued past which the queue is rebuilt from the buckets still armed (stale
#: ticks of long delays would otherwise pile up: 100 a second of the longest delay).
_COMPACT_AT = 1024


class _Entry:
    """What a bucket holds: something to do once its time has come."""

    __slots__ = ("bucket",)

    def __init__(self) -> None:
        self.bucket = 0

    def expire(self) -> None:
        raise NotImplementedError


class Deadlines:
    """The timeouts and timers of one event loop, fired by one timer (see the module)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        #: Weakly: the registry (`deadlines`) maps each loop to its own, and a closed loop
        #: must not be kept alive by it.
        self._loop_ref = weakref.ref(loop)
        #: Bucket number -> what is due in it (a dict kept in insertion order).
        self._buckets: dict[int, dict[_Entry, None]] = {}
        #: Bucket numbers that had entries, smallest first (each once: `_queued`); one
        #: emptied before its time stays until then. So it holds at most the longest
        #: delay's worth of ticks, however many calls come and go.
        self._due: list[int] = []
        self._queued: set[int] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_bucket = math.inf

    def timeout(self, delay: float) -> _Timeout:
        """An async context manager: `TimeoutError` out of its block if it runs `delay`
        seconds or more (on the loop's clock), as `asyncio.timeout(delay)`."""
        return _Timeout(self, self._loop().time() + delay)

    def call_later(self, delay: float, callback: Callable[[], object]) -> Alarm:
        """Call `callback` once `delay` seconds have passed (at most a tick later), unless
        the alarm returned is cancelled first."""
        alarm = Alarm(self, callback)
        self._arm(alarm, self._loop().time() + delay)
        return alarm

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop_ref()
        if loop is None:  # only a closed, collected loop's: nothing runs on it any more
            raise RuntimeError("the loop of these timeouts is gone")
        return loop

    def __len__(self) -> int:
        """The timeouts and alarms armed now."""
        return sum(len(b) for b in self._buckets.values())

    def _arm(self, entry: _Entry, when: float) -> None:
        number = math.ceil(when / TICK_S)
        entry.bucket = number
        bucket = self._buckets.get(number)
        if bucket is None:
            bucket = self._buckets[number] = {}
            if number not in self._queued:
                if len(self._due) > 2 * len(self._buckets) + _COMPACT_AT:
                    # In place (`_fire` may be running: an alarm's callback arms more).
                    self._due[:] = sorted(self._buckets)  # (a sorted list is a heap)
                    self._queued.clear()
                    self._queued.update(self._due)
                self._queued.add(number)
                heapq.heappush(self._due, number)
            if number < self._timer_bucket:
                self._set_timer(number)
        bucket[entry] = None

    def _disarm(self, entry: _Entry) -> None:
        bucket = self._buckets.get(entry.bucket)
        if bucket is not None:
            bucket.pop(entry, None)
            if not bucket:
                del self._buckets[entry.bucket]  # its number stays in `_due`: skipped

    def _set_timer(self, number: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_bucket = number
        self._timer = self._loop().call_at(number * TICK_S, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_bucket = None, math.inf
        now = self._loop().time() + _SLACK_S
        due, buckets = self._due, self._buckets
        while due:
            number = due[0]
            if number in buckets and number * TICK_S > now:
                self._set_timer(number)
                return
            heapq.heappop(due)
            self._queued.discard(number)
            for entry in buckets.pop(number, ()):  # (none: emptied before its time)
                entry.expire()


class Alarm(_Entry):
    """A `Deadlines.call_later`: `cancel()` it to have nothing called."""

    __slots__ = ("_callback", "_deadlines")

    def __init__(self, deadlines: Deadlines, callback: Callable[[], object]) -> None:
        super().__init__()
        self._deadlines: Deadlines | None = deadlines
        self._callback = callback

    def cancel(self) -> None:
        if self._deadlines is not None:
            self._deadlines._disarm(self)
            self._deadlines = None

    def cancelled(self) -> bool:
        """Whether it was cancelled or has fired: nothing more will be called."""
        return self._deadlines is None

    def expire(self) -> None:
        deadlines, self._deadlines = self._deadlines, None
        if deadlines is None:
            return
        try:
            self._callback()
        except Exception as exc:  # as the loop's own callbacks: reported, the rest go on
            deadlines._loop().call_exception_handler(
                {"message": "Exception in a Deadlines callback", "exception": exc}
            )


class _Timeout(_Entry):
    """One `Deadlines.timeout`: asyncio's `Timeout` state machine, on a shared timer."""

    __slots__ = ("_cancelling", "_deadlines", "_expired", "_task", "when")

    def __init__(self, deadlines: Deadlines, when: float) -> None:
        super().__init__()
        self._deadlines = deadlines
        self.when = when
        self._expired = False
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0

    async def __aenter__(self) -> _Timeout:
        task = asyncio.current_task(self._deadlines._loop())
        if task is None:
            raise RuntimeError("a timeout must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._deadlines._arm(self, self.when)
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
