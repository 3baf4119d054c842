"""A detector's failures in the node's log, without a flood.

The monitor goes on when a detector raises (one detector's bug blinds no other:
engine.py, routes.py), and a detector with a bug, or a record it was not written for,
may raise on every record it reads. Logging each failure with its traceback would fill
the node's log with copies of one report, and each costs the monitor's loop about
0.12 ms of CPU (Python's traceback formatting reads and parses every frame's source
line; 118 us for a two-frame traceback here, against 1.3 us to raise and catch it):
at the audit log's rate, enough to put the monitor behind the records it examines.

So each kind of failure (a detector's name, and what failed) is logged with its
traceback at most once per interval, a minute by default; the failures in between are
counted, and said either by the next one logged or, once the interval has passed
without one, by a line of their own (`flush`, at the monitor's tick and close). A
detector that fails once is logged at once, as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["FaultLog"]

log = logging.getLogger("donjon.monitor")

#: Kinds of failure tracked at once. Detectors are a fixed set; past this the table
#: starts over (each kind's next failure is logged), so it never grows without bound.
_MAX_KINDS = 256


class FaultLog:
    """Logs an exception being handled with its traceback, at most once per `interval_s`
    for each kind; counts the ones it does not log."""

    __slots__ = ("_clock", "_interval_s", "_kinds")

    def __init__(
        self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval_s = interval_s
        self._clock = clock
        #: Per kind: when it was last logged, and the failures since, not logged.
        self._kinds: dict[str, tuple[float, int]] = {}

    def exception(self, kind: str, message: str, *args: object) -> None:
        """Inside an `except` block: log `message % args` with the exception's traceback,
        unless a failure of `kind` was logged less than `interval_s` ago (then count it)."""
        now = self._clock()
        last = self._kinds.get(kind)
        if last is not None and now - last[0] < self._interval_s:
            self._kinds[kind] = (last[0], last[1] + 1)
            return
        if last is None and len(self._kinds) >= _MAX_KINDS:
            self._kinds.clear()
        self._kinds[kind] = (now, 0)
        if last is not None and last[1]:
            message += " (%d more since the last one logged, %.0f s before, not logged)"
            args = (*args, last[1], now - last[0])
        log.exception(message, *args, stacklevel=2)  # the caller's line, not this one

    def flush(self, *, everything: bool = False) -> None:
        """Say the failures counted and not logged of each kind whose interval has passed
        since its last one logged (of every kind, with `everything`: the monitor closing),
        in a line without a traceback; the kind's next failure is logged in full."""
        now = self._clock()
        for kind, (at, unlogged) in list(self._kinds.items()):
            if not everything and now - at < self._interval_s:
                continue
            del self._kinds[kind]
            if unlogged:
                log.error(
                    "monitor: %s failed %d more times in the %.0f s after the one logged",
                    kind,
                    unlogged,
                    now - at,
                )

    def unlogged(self, kind: str) -> int:
        """The failures of `kind` counted and not logged since its last one logged."""
        last = self._kinds.get(kind)
        return 0 if last is None else last[1]
