"""Bounded waiting for a free slot: which calls may queue, and which are shed at once.

A call that finds its function at its concurrency limit waits for a slot
(pool.py). Without a bound, an overload piles calls up in that wait: each
holds its request, its connection and its event in memory, and every call
behind it answers later. Here the wait is bounded four ways, and a call past
any of them is refused at once with `CallShed` (503 and Retry-After), before it
holds anything:

- per function: at most `per_function` calls wait for that function's slots;
- per node: at most `node` calls wait in all, whatever the function;
- in time: a call whose expected wait (calls ahead of it, over the function's
  concurrency, times the function's recent service time) is above its budget
  (`BUDGET_FACTOR` service times, and never above `wait_s`) is not queued: it
  would answer too late to be worth serving, and make every later call later;
- while the function's queue stands (standing.py: CoDel's rule, every call that took
  a slot over the last interval waited past the target, and the queue overflowed
  these bounds meanwhile) or overflows (refused at these bounds at least as often as
  it served over the last second, and for a second after), the budget is the
  target, about one service time: a lasting overload is refused, a burst still
  queues.

A call that did queue and still waits `wait_s` gives up as before
(`TooManyInvocations`, 429: the function's own concurrency limit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from donjon.sandbox.errors import CallShed
from donjon.sandbox.standing import ShedTiming

__all__ = ["BUDGET_FACTOR", "Backlog", "QueueBounds", "ServiceTime"]

#: A queued call may expect to wait at most this many of its function's recent
#: service times: its latency stays within (1 + factor) service times.
BUDGET_FACTOR = 4.0
#: Weight of the newest call in the moving average of service times.
_ALPHA = 0.2


@dataclass(frozen=True)
class QueueBounds:
    """How many calls may wait for a free slot, and for how long (config.py's settings)."""

    per_function: int = 64
    node: int = 512
    wait_s: float = 5.0
    #: A standing queue's target and interval (standing.py); 0: from the service time.
    shed: ShedTiming = field(default_factory=ShedTiming)


def node_bounds(per_function: int, node: int, wait_s: float, shed: ShedTiming) -> QueueBounds:
    """A node's bounds from its settings (DONJON_MAX_QUEUED_PER_FUNCTION, DONJON_MAX_QUEUED,
    ...): a function's own bound is at most the node's. A larger one is never reached, and
    a function whose own calls filled the node would be refused as if other functions'
    had (`node_only`), so its refusals would never make its queue overflow nor arm the
    lag shed (standing.py, gateway/lag_shed.py)."""
    return QueueBounds(min(per_function, node), node, wait_s, shed)


class ServiceTime:
    """An exponentially weighted moving average of one function's call times (seconds)."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds = 0.0

    def note(self, seconds: float) -> None:
        self.seconds = (
            seconds if self.seconds == 0.0 else self.seconds + _ALPHA * (seconds - self.seconds)
        )


class Backlog:
    """The node's count of waiting calls and of calls shed. Runs on the event loop only."""

    def __init__(self, bounds: QueueBounds) -> None:
        self.bounds = bounds
        #: Calls waiting for a slot now, over all functions.
        self.waiting = 0
        #: Calls shed since the node started (read by the bench and the tests).
        self.shed = 0

    def admit(
        self,
        function: str,
        ahead: int,
        concurrency: int,
        service_s: float,
        standing_s: float | None = None,
        *,
        refusing: bool = True,
    ) -> None:
        """May one more call of `function` wait, with `ahead` calls already waiting for
        its `concurrency` slots? `standing_s`: its queue stands (standing.py), and this
        is its target, the budget then. Raises `CallShed` if not; returns if it may.
        `refusing`: the call is refused if this raises (else it is only asked, and
        counted in `shed` by the caller if it is refused after all)."""
        bounds = self.bounds
        expected = (ahead // max(1, concurrency) + 1) * service_s
        budget = min(bounds.wait_s, BUDGET_FACTOR * service_s)
        over_budget = service_s > 0 and expected > budget
        target = math.inf if standing_s is None else standing_s
        over_target = expected > target
        node_only = False
        if ahead >= bounds.per_function:
            why = f"{function} has {ahead} calls waiting (at most {bounds.per_function})"
        elif self.waiting >= bounds.node:
            why = f"the node has {self.waiting} calls waiting (at most {bounds.node})"
            # Other functions' calls filled it, unless this one's own budget refuses it too.
            node_only = not (over_budget or over_target)
        elif over_budget:
            why = (
                f"{function} would answer in about {expected * 1000:.0f} ms, "
                f"past its queue-time budget ({budget * 1000:.0f} ms)"
            )
        elif over_target:
            why = (
                f"{function} has a standing queue: it would answer in about "
                f"{expected * 1000:.0f} ms, past its target ({target * 1000:.0f} ms)"
            )
        else:
            return
        if refusing:
            self.shed += 1
        raise CallShed(
            f"overloaded: {why}",
            hint="retry after the Retry-After seconds",
            retry_after_s=max(1.0, math.ceil(expected)),
            node_only=node_only,
        )
