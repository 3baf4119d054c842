"""Shedding a share of the calls in proportion to the event loop's lag: PIE's controller.

Under overload the gateway's one event loop is the bottleneck of a warm function: a
served call costs the loop 250-440 µs, a refusal from the request head 30-65 µs
(docs/performance.md, "Shedding from the request head"). Past about twice the
sustainable rate, refusing only what the function's queue cannot take leaves the loop
more work than it can do, so requests wait in the sockets behind one another and
every answer, accepted or shed, comes late. The bound of capacity.py (503 for
everyone past `DONJON_MAX_LOOP_LAG_S`) is all-or-nothing, a backstop.

Here the share of calls refused grows with the loop's lag, so that the loop's work
(serving plus refusing) stays within what it can do and the lag near a small
target. The controller is PIE's (Pan et al., RFC 8033), with the loop's lag in
place of the queue delay: every `interval`, a timer measures how late the loop ran
it (`lag`), and

    p += ALPHA * (lag - target) + BETA * (lag - lag_before)

clamped to [0, 1], each step at most `MAX_STEP`; p decays (x `DECAY`) while the lag
is below half the target, and is 0 below `FLOOR`; from 0 it starts only on a lag past
the target (the derivative alone, on noisy samples, would ratchet it up from 0).
While the lag is below half the target and p is under `SAFE_P`, nothing is shed
(RFC 8033's safeguard: a short burst is not shed). Each authenticated invoke head
the pool would take is shed with probability p if the pool refused a call of its
function at the function's own bounds within `HOLD_S` (a refusal at the node's bound
alone, which other functions' calls filled, does not count: it says nothing of this
function's queue; early_shed.py: the same 503, Retry-After and
audit as the other sheds, and the same rule: only a bearer API key the index
verifies and whose principal may invoke the function; any other head goes to the
app). Only those functions': a tenant that floods its own full function arms the
controller and makes the loop late, but sheds no other function's calls.

Ours, so that ordinary load is never shed: p only *starts* to rise once the pool
has refused `ARM_REFUSALS` calls, of any functions, at their own bounds from their
heads (`overflowed`, from
early_shed.py: the node is demonstrably offered more than it serves) within `ARM_S`,
and for `ARM_S` after; a closed loop of clients saturating the loop (the bench's
sustainable run) fills the pool's queue once in a while at most, and a stall of a
loaded machine is lag without an overflow. Once p is above 0 the controller runs on
its own for `HOLD_S` after the last arming; past that, with no overflow, p decays to 0
whatever the lag (a lag shedding does not cure, another process's CPU or a stalled
machine, must not shed every call of a node whose pool takes them all). The timer
runs only while armed or p > 0: an idle node is not woken. Knobs (config.py):
DONJON_LAG_TARGET_MS (10) and DONJON_LAG_INTERVAL_MS (15); DONJON_MAX_LOOP_LAG_S=0
turns this off with the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

__all__ = ["ALPHA", "BETA", "HOLD_S", "MAX_OVERFLOWING", "LagController", "LagShed"]

#: PIE's gains, per second of lag: RFC 8033's 0.125 and 1.25 times 10 and 2 (a request's
#: share is tens of percent under overload, not a packet drop rate of 1e-6: no
#: auto-tuning; the lag samples are noisy, so the derivative's gain stays low).
ALPHA = 1.25
BETA = 2.5
#: The largest change of p in one update (RFC 8033 caps a step at 2 % once p >= 10 %).
MAX_STEP = 0.05
#: p is multiplied by this at each update while the lag is below half the target.
DECAY = 0.9
#: Below this p is 0 (the controller is idle).
FLOOR = 0.001
#: Below this p, nothing is shed while the lag is below half the target.
SAFE_P = 0.2
#: p may start to rise for ARM_S once the pool has refused ARM_REFUSALS calls at its
#: bounds within ARM_S: an overload refuses thousands a second, a closed loop of
#: clients at the edge of the queue's budget one now and then.
ARM_S = 1.0
ARM_REFUSALS = 16
#: p is held by the lag alone for this long after the last arming; past it, it decays.
#: A function's calls are in the share for as long after the pool refused one of them.
HOLD_S = 5.0
#: Functions remembered as refused at the pool's bounds before the lapsed are dropped.
MAX_OVERFLOWING = 1024


class LagController:
    """PIE's state and update. Deterministic: the lag samples and the clock are given
    (seconds), so it is tested without sleeping."""

    __slots__ = (
        "_armed_until",
        "_held_until",
        "_lag_before",
        "_refusals",
        "_since",
        "p",
        "target_s",
    )

    def __init__(self, target_s: float) -> None:
        self.target_s = target_s
        #: The share of calls to shed now.
        self.p = 0.0
        self._lag_before = 0.0
        self._armed_until = -1.0
        #: Past this, with no new arming, p decays whatever the lag (HOLD_S).
        self._held_until = -1.0
        #: Refusals at the pool's bounds counted since `_since`.
        self._refusals = 0
        self._since = -ARM_S

    def overflowed(self, now: float) -> None:
        """The pool refused a call at its function's own bounds: the ARM_REFUSALS-th
        within ARM_S (of any functions) lets p rise for ARM_S from now."""
        if now - self._since >= ARM_S:
            self._refusals, self._since = 0, now
        self._refusals += 1
        if self._refusals >= ARM_REFUSALS:
            self._armed_until = now + ARM_S
            self._held_until = now + HOLD_S

    def armed(self, now: float) -> bool:
        return now < self._armed_until

    def update(self, lag_s: float, now: float) -> None:
        """One update interval's lag sample."""
        lag_before, self._lag_before = self._lag_before, lag_s
        if self.p <= 0.0 and (lag_s <= self.target_s or not self.armed(now)):
            return  # ordinary load: no overflow, or the lag within the target
        half = self.target_s / 2
        if (lag_s < half and lag_before < half) or now >= self._held_until:
            self.p *= DECAY  # the lag is short, or no overflow for HOLD_S: the overload ended
        else:
            step = ALPHA * (lag_s - self.target_s) + BETA * (lag_s - lag_before)
            self.p += max(-MAX_STEP, min(MAX_STEP, step))
        self.p = min(1.0, self.p)
        if self.p < FLOOR:
            self.p = 0.0

    def sheds(self, draw: float) -> bool:
        """Whether a call whose uniform draw in [0, 1) is `draw` is shed now."""
        if self.p <= 0.0:
            return False
        if self.p < SAFE_P and self._lag_before < self.target_s / 2:
            return False
        return draw < self.p


class LagShed:
    """The controller on the running loop: a timer every `interval_s` gives it the lag."""

    def __init__(self, target_s: float, interval_s: float) -> None:
        self.controller = LagController(target_s)
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        #: Which calls are shed only needs to be a fair share.
        self._draws = random.Random()  # noqa: S311  # nosec B311 - a fair share, not a secret
        #: Function -> the loop's time until which its calls may be shed (HOLD_S after
        #: the pool last refused one at its own bounds); deployed functions only.
        self._overflowing: dict[str, float] = {}

    def overflowed(self, name: str) -> None:
        """The pool refused a call of `name` at its own bounds (on the loop): arm, start the
        timer; `name`'s calls may be shed for HOLD_S."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.controller.overflowed(now)
        if len(self._overflowing) >= MAX_OVERFLOWING and name not in self._overflowing:
            self._overflowing = {n: t for n, t in self._overflowing.items() if t > now}
        self._overflowing[name] = now + HOLD_S
        if self._task is None:
            self._task = loop.create_task(self._run(), name="lag-shed")

    def sheds(self, name: str) -> bool:
        """Whether the call of `name` whose head was just read is shed: probability p,
        if the pool refused a call of `name` at its own bounds within HOLD_S."""
        if self.controller.p <= 0.0:
            return False
        until = self._overflowing.get(name)
        if until is None or until <= asyncio.get_running_loop().time():
            return False
        return self.controller.sheds(self._draws.random())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        clock = loop.time
        controller = self.controller
        try:
            while True:
                due = clock() + self.interval_s
                await asyncio.sleep(self.interval_s)
                now = clock()
                controller.update(max(0.0, now - due), now)
                if controller.p <= 0.0 and not controller.armed(now):
                    self._overflowing.clear()
                    return  # idle again: the next overflow starts the timer
        finally:
            self._task = None
