"""A standing queue told from a burst: CoDel's rule on a function's wait for a slot.

The bounds of backlog.py cap a function's queue at 4 service times of expected
wait. Under a burst that is right: the burst drains and every call is served. Under
a lasting overload it is not: the queue sits at its cap, and every call the node
accepts waits the whole 4 service times, for as long as the overload lasts.

CoDel (Nichols and Jacobson, "Controlling Queue Delay", ACM Queue 2012; RFC 8289)
tells the two apart by the sojourn of what leaves the queue, here the time from a
call's admission to when it takes a slot (0 for a call that finds a slot free):
while no call that took a slot in the last `interval` waited less than `target`, the
queue is *standing*. A burst that drains within the interval is never standing.
One more condition, ours: a call was refused at the queue's bounds in that time. A
closed loop of clients (the bench's 32 connections at concurrency 8) keeps a queue
of its own size that CoDel alone calls standing (measured: docs/performance.md,
"Shedding a standing queue"); it never fills the bounds, so it is never shed.

While a function's queue stands, its queue-time budget is `target` instead of 4
service times: a call that would wait longer is shed (503, at the request head and
at `admit`, as the other bounds are), so the calls accepted wait about one service
time, not four. This is CoDel's rule as servers apply it to a request queue (Maurer,
"Fail at Scale", ACM Queue 2015: while the queue has not been empty for the
interval, the time a request may queue is the short target). The queue stops
standing when it drains: a call finds a slot free. A call that waited less than
`target` restarts the interval for the next time, as in CoDel. Callers that wait
the Retry-After let the queue drain; callers that retry at once, faster than the
function serves, keep it standing, and are shed as the overload they are.

CoDel's rule alone rarely holds under a lasting overload of a warm function: its
calls are refused at the request head by the thousand, yet now and then a call finds
a slot free, which ends the standing queue, and the calls accepted then wait up to the
4 service times again (measured under 4x the sustainable rate: 15-34 of about 36,000
refusals were the standing queue's, and the slot wait's p99 was 37-59 ms against 5-11
ms with the rule below; docs/performance.md, "the sixteenth round"). So, ours too: a
queue *overflows* while, over the last `OVERFLOW_S`, it refused at least as many calls
as it served (and at least `OVERFLOW_REFUSALS`): the demand is twice what it serves or
more. It then stays overflowing for `OVERFLOW_S` after the last such refusal,
whatever a free slot says, and its budget is the target meanwhile, as a standing
queue's. A refusal at the node's bound alone does not count, nor one of a caller known
to be over its own rate or quota (limited_callers.py: its call would get 429 and never
queue). A closed loop of callers that honour the Retry-After is refused far less often
than it is served (even when the refused come back together), so an overflow lapses
and it is queued as before; callers that retry at once, without waiting, are refused
faster than they are served, and keep it overflowing while they do: calls beyond about
twice the concurrency are then shed. A burst of heads read in one turn can make a
lightly used function's queue overflow for a second, counting the heads let through of
callers who may invoke and are not known to be over a limit of their own
(early_shed.py); a caller not yet known so counts until its first 429 on this node, and
no more for as long as it is remembered (a minute past its Retry-After at least).
Refusals are counted over a sliding window estimated from two fixed ones (the share of
the last one still within `OVERFLOW_S`), the calls served the same way.

Both are derived from the function's own service time (backlog.ServiceTime, a
moving average), unless set: `target` is one service time (the calls waiting are at
most one concurrency's worth), `interval` is the larger of 100 ms and
`INTERVAL_SERVICES` service times (a full queue drains in 4: a slow function's
burst is not a standing queue). DONJON_SHED_TARGET_MS / DONJON_SHED_INTERVAL_MS
set them for every function (config.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["INTERVAL_SERVICES", "OVERFLOW_REFUSALS", "OVERFLOW_S", "ShedTiming", "StandingQueue"]

#: The interval is at least this many of the function's service times.
INTERVAL_SERVICES = 5.0
#: The interval when the function's service times do not ask for a longer one (CoDel's).
DEFAULT_INTERVAL_S = 0.1
#: A queue refused at its bounds at least this many times, and at least as many times as
#: it served a call, over the last OVERFLOW_S is overflowing, and stays so for
#: OVERFLOW_S after the last such refusal (an overload refuses thousands a second; a
#: closed loop at the edge of the budget, one now and then).
OVERFLOW_REFUSALS = 16
OVERFLOW_S = 1.0


@dataclass(frozen=True)
class ShedTiming:
    """The node's settings: 0 means derived from each function's service time."""

    target_s: float = 0.0
    interval_s: float = 0.0

    def target(self, service_s: float) -> float:
        """The longest wait of a standing queue's calls for a function of `service_s`."""
        return self.target_s or service_s

    def interval(self, service_s: float) -> float:
        """How long every call must have waited past the target for the queue to stand."""
        return self.interval_s or max(DEFAULT_INTERVAL_S, INTERVAL_SERVICES * service_s)


class StandingQueue:
    """One function's queue, standing or not, overflowing or not. Runs on the event loop
    only; the clock (`now`, seconds) is the caller's, so the rules are tested without
    sleeping."""

    __slots__ = (
        "_first_above",
        "_full",
        "_overflow_until",
        "_refused_before",
        "_refused_now",
        "_served_before",
        "_served_now",
        "_window",
        "standing",
    )

    def __init__(self) -> None:
        #: When the queue will be standing if no call waits less than the target till
        #: then (0: the last call to take a slot waited less).
        self._first_above = 0.0
        #: A call was refused at the queue's bounds since a call last waited less
        #: than the target or found a slot free.
        self._full = False
        self.standing = False
        #: Refusals that count and calls served, in the current window of OVERFLOW_S
        #: (`_window`, its index on the clock) and in the one before it.
        self._window = 0
        self._refused_now = self._refused_before = 0
        self._served_now = self._served_before = 0
        #: Until when the queue overflows.
        self._overflow_until = -math.inf

    def took_free_slot(self) -> None:
        """A call found a slot free: the queue has drained (an overflow's hold stays)."""
        self._first_above = 0.0
        self._full = False
        self.standing = False

    def refused(self) -> None:
        """A call was shed at the queue's bounds (backlog.py): the queue is full."""
        self._full = True

    def _roll(self, now: float) -> float:
        """Move the windows on to `now`'s; returns the share of the window before it that
        is still within OVERFLOW_S of `now` (a sliding window, estimated from two)."""
        position = now / OVERFLOW_S
        window = math.floor(position)
        if window != self._window:
            if window == self._window + 1:
                self._refused_before, self._served_before = self._refused_now, self._served_now
            else:
                self._refused_before = self._served_before = 0
            self._refused_now = self._served_now = 0
            self._window = window
        return 1.0 - (position - window)

    def served(self, now: float) -> None:
        """A call that took a slot ended (the pool tells)."""
        self._roll(now)
        self._served_now += 1

    def overflowed(self, now: float) -> None:
        """A call was shed at the function's own bounds (one that counts: the pool's
        `refused_at_head`, `_admit`): once the refusals over the last OVERFLOW_S are
        OVERFLOW_REFUSALS or more and no fewer than the calls served over it, the queue
        overflows until OVERFLOW_S from now."""
        before = self._roll(now)
        self._refused_now += 1
        refused = self._refused_now + before * self._refused_before
        if refused >= OVERFLOW_REFUSALS and refused >= (
            self._served_now + before * self._served_before
        ):
            self._overflow_until = now + OVERFLOW_S

    def overflowing(self, now: float) -> bool:
        return now < self._overflow_until

    def waited(self, sojourn_s: float, now: float, target_s: float, interval_s: float) -> None:
        """A call took a slot after waiting `sojourn_s` (CoDel's test at dequeue); with
        no target yet (no service time measured) it tells nothing."""
        if target_s <= 0.0:
            return
        if sojourn_s < target_s:
            self._first_above = 0.0
            self._full = False
        elif self._first_above == 0.0:
            self._first_above = now + interval_s
        elif now >= self._first_above and self._full:
            self.standing = True

    def budget(self, timing: ShedTiming, service_s: float, now: float) -> float | None:
        """The queue-time budget while the queue stands or overflows (its target); None
        if it does neither, or if the function has no service time measured yet."""
        if service_s <= 0.0 or not (self.standing or now < self._overflow_until):
            return None
        return timing.target(service_s)
