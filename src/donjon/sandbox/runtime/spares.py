"""How many one-call workers to keep made ahead of calls (isolation `invocation`).

A call is handed to a spare that is already confined and has imported the
handler; the supervisor then makes another. One spare is enough for calls
that come slower than a worker is made; calls that come faster, or several
at once, would wait for a worker in the making. So the supervisor keeps

    1 + round(rate x max(make time, call time))

spares, where `rate` is the recent arrival rate of calls (an exponentially
decaying count: each call adds 1/TAU_S, which decays with time constant
TAU_S, so the rate falls back to 0 when calls stop), `make time` the
smoothed time from a worker's start to its ready report and `call time` the
smoothed time from a hand-off to its worker's end (Little's law: that many
workers are consumed while one is made, or while the calls in flight run).

Bounded by the sandbox's room: its memory and pids cgroups are sized for the
function's `concurrency` calls plus two workers (instance_cgroups.py), so the
spares and the calls in flight together stay within `concurrency + 2`, and
never fewer than one spare. When demand falls, the spares beyond the number
are ended at their next idle look (workers.py's IDLE_CHECK_S): a spare is
never kept for a second call, whatever the demand.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import math

#: Time constant of the arrival rate, seconds.
TAU_S = 1.0
#: Weight of the newest sample in the smoothed make and call times.
ALPHA = 0.2


class Demand:
    """Recent calls per second and typical times, and the spares they call for."""

    def __init__(self, concurrency: int) -> None:
        #: workers alive at once at most: the calls in flight and the spares together
        self.room = max(1, concurrency) + 2
        self._rate = 0.0
        self._at = 0.0
        self.make_s = 0.0
        self.call_s = 0.0

    def called(self, now: float) -> None:
        """A call arrived at `now` (time.monotonic())."""
        self._rate = self.rate(now) + 1.0 / TAU_S
        self._at = now

    def rate(self, now: float) -> float:
        """Calls per second lately, decayed to `now`."""
        if self._rate == 0.0:
            return 0.0
        return self._rate * math.exp(-max(0.0, now - self._at) / TAU_S)

    def made(self, seconds: float) -> None:
        """A worker took `seconds` from its start to its ready report."""
        self.make_s = _smooth(self.make_s, seconds)

    def call_ended(self, seconds: float) -> None:
        """A call took `seconds` from its hand-off to its worker's end."""
        self.call_s = _smooth(self.call_s, seconds)

    def spares(self, now: float, busy: int) -> int:
        """Spares to keep at `now` while `busy` workers run calls (at least one)."""
        ahead = self.rate(now) * max(self.make_s, self.call_s)
        want = 1 + math.floor(ahead + 0.5)  # rounded: a trickle of calls keeps one spare
        return max(1, min(want, self.room - busy))


def _smooth(old: float, sample: float) -> float:
    sample = max(0.0, sample)
    return sample if old == 0.0 else old + ALPHA * (sample - old)
