"""The scheduler: fires schedule triggers once a minute, each a normal audited call."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from donjon.triggers.cron import CronExpression

__all__ = ["MAX_STEP_BACK", "Scheduler"]

log = logging.getLogger("donjon.schedule")

Fire = Callable[[str, str, dt.datetime], Awaitable[None]]
Jobs = Callable[[], list[tuple[str, CronExpression]]]
Clock = Callable[[], dt.datetime]
EndCalls = Callable[[], Awaitable[None]]


#: A wall clock read further back than this from the minute last fired was corrected (it
#: had been ahead): the scheduler resumes on it, and the minutes it fired while wrong fire
#: again when they come (their events carry the same `time`). Within it, the minutes up to
#: the one fired are not fired again.
MAX_STEP_BACK = dt.timedelta(minutes=5)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Scheduler:
    """Wakes at each minute boundary (UTC) and fires the triggers that match it."""

    def __init__(self, jobs: Jobs, fire: Fire, clock: Clock = _utc_now) -> None:
        self._jobs = jobs
        self._fire = fire
        #: The wall clock the minutes are read on (UTC).
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Fire nothing more; the calls in flight run on until `drain`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def drain(self, grace_s: float, end_calls: EndCalls) -> None:
        """Give the scheduled calls in flight `grace_s` to end, then `end_calls` (the node
        ends their sandboxes): each ends as a crashed sandbox does, with its audit record.
        Before, the node's stop waited for them whole, up to their `timeout_s`, and the
        supervisor that gave up first killed the node with the call unrecorded."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace_s)
        if self._running:
            await end_calls()
            await asyncio.gather(*self._running, return_exceptions=True)

    def due(self, minute: dt.datetime) -> list[tuple[str, str]]:
        """(function, expression) pairs that fire at `minute`: each function once, with the
        first of its schedules that matches (before, once for each: a manifest of 500
        `* * * * *` schedules was called 500 times a minute, past its deployer's limits)."""
        due: dict[str, str] = {}
        for name, cron in self._jobs():
            if name not in due and cron.matches(minute):
                due[name] = cron.text
        return list(due.items())

    async def _loop(self) -> None:
        fired: dt.datetime | None = None
        while True:
            now = self._clock()
            minute = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
            if fired is not None and fired - MAX_STEP_BACK < minute <= fired:
                # The sleep runs on the loop's monotonic clock: a wall clock slewed slow
                # (NTP) or stepped back a little reads a time before the minute just fired,
                # which would be taken for the next one and fired again. Stepped back
                # further, the clock was wrong and is now corrected: waiting for the minute
                # after the one fired (a year on, after a bad RTC) fired nothing meanwhile.
                minute = fired + dt.timedelta(minutes=1)
            await asyncio.sleep((minute - now).total_seconds())
            fired = minute
            for name, text in self.due(minute):
                task = asyncio.get_running_loop().create_task(self._run(name, text, minute))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def _run(self, name: str, text: str, minute: dt.datetime) -> None:
        try:
            await self._fire(name, text, minute)
        except Exception as e:  # one failed job must not stop the others
            log.warning("scheduled call of %s failed: %s", name, e)
