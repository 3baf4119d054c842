"""Rate baselines: calls, and GB-seconds, per time window (baselines.py has the rest).

Each subject's series is the amount per `bucket_s` window (calls for
`call_rate`; wall time x memory limit for `cost`, the denial-of-wallet
measure). The open window is judged at every call, against the band of the
closed windows the series found normal: the call that crosses it raises the
finding (its evidence: the window's calls), and the window is then never
learned. Quiet windows count, as zeros. Besides the band's floors, a window
must exceed its median by `min_calls` typical calls (the mean amount of the
last calls in windows found normal: a key calling a cheap and a dear function
has both kinds of ordinary calls): a key that calls once every few minutes has
a median of zero and a MAD of zero, and two calls in one minute are not an
attack, in calls or in GB-seconds. A subject silent for longer than its
whole history starts learning again (its old baseline says nothing about it),
and is then forgotten by `tick`, which keeps memory bounded by activity as
well as by the cap on subjects.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from donjon.monitor.baselines import MAX_EVIDENCE, SeriesDetector
from donjon.monitor.calls import Call
from donjon.monitor.findings import Finding, Severity, Subject
from donjon.monitor.robust import Band, BaselineError, RobustWindow

__all__ = ["RateDetector", "call_rate", "cost"]


#: Per-call amounts kept to know a typical call (per subject).
TYPICAL_CALLS = 32


@dataclass(slots=True)
class _Rate:
    window: RobustWindow
    #: The amounts of the last calls in windows found normal.
    typical: deque[float] = field(default_factory=lambda: deque(maxlen=TYPICAL_CALLS))
    #: The open window's per-call amounts (learned into `typical` if it closes normal).
    pending: list[float] = field(default_factory=list)
    #: The mean of `typical`, as of the last window closed.
    per_call: float = 0.0
    #: The open window's limit (None while learning), fixed when it opened.
    limit: float | None = None
    #: The open window's index (time // bucket_s), -1 before the first call.
    bucket: int = -1
    amount: float = 0.0
    calls: int = 0
    flagged: bool = False
    evidence: list[int] = field(default_factory=list)


class RateDetector(SeriesDetector[_Rate]):
    """An amount per time window (`measure` of each call) against its median and MAD."""

    def __init__(
        self,
        name: str,
        kind: str,
        measure: Callable[[Call], float | None],
        band: Band,
        *,
        unit: str,
        min_calls: float = 10.0,
        bucket_s: float = 60.0,
        severity: Severity = "medium",
        max_subjects: int = 5000,
    ) -> None:
        super().__init__(band, max_subjects)
        if not math.isfinite(bucket_s) or bucket_s <= 0:
            raise BaselineError(
                f"a rate window of {bucket_s!r} seconds measures nothing", hint="use > 0"
            )
        self.name, self.kind, self.severity = name, kind, severity
        if not math.isfinite(min_calls) or min_calls < 0:
            raise BaselineError(f"min_calls must be a number >= 0, not {min_calls!r}", hint="10")
        self.measure, self.unit, self.bucket_s = measure, unit, bucket_s
        self.min_calls = min_calls
        self._last_sweep = -1

    def new_state(self) -> _Rate:
        return _Rate(RobustWindow(self.band))

    def _roll(self, state: _Rate, bucket: int) -> None:
        """Close the open window (learned unless flagged) and the quiet ones since."""
        if bucket <= state.bucket:
            return  # the same window (or a clock that stepped back: counted in it)
        if state.bucket >= 0:
            gap = bucket - state.bucket - 1
            if gap >= self.band.size:
                state.window = RobustWindow(self.band)  # long silence: learn again
            else:
                if not state.flagged:
                    state.window.push(state.amount)
                    state.typical.extend(state.pending)
                    if state.typical:
                        state.per_call = statistics.fmean(state.typical)
                state.window.push_many(0.0, gap)
        state.bucket, state.amount, state.calls = bucket, 0.0, 0
        state.flagged, state.evidence, state.pending = False, [], []
        state.limit = self.upper(state) if state.window.learned else None

    def upper(self, state: _Rate) -> float:
        """The band of the series, and at least `min_calls` typical calls above its median."""
        median, _ = state.window.stats()
        return max(state.window.upper(), median + self.min_calls * state.per_call)

    def see(self, subject: Subject, call: Call, now: float) -> Finding | None:
        found: list[Finding] = []
        self.see_all((subject,), call, now, found)
        return found[0] if found else None

    def see_all(
        self, subjects: tuple[Subject, ...], call: Call, now: float, found: list[Finding]
    ) -> None:
        """The call's amount and window, once for all its subjects; then each subject's."""
        measure = self.measure
        if measure is _one:  # (call_rate's measure, without a call)
            amount: float | None = 1.0
        elif measure is _gb_seconds:  # (cost's, likewise: `_gb_seconds`, written out)
            duration, memory = call.duration_ms, call.memory_mb
            if duration is None or memory is None:
                return
            amount = (duration / 1000.0) * (memory / 1024.0)
        else:
            amount = measure(call)
        if amount is None:
            return
        bucket = int(now // self.bucket_s)
        series, table = self.series, self.series.table
        for subject in subjects:
            state = table.get(subject.text)  # (`series.setdefault`, inline)
            if state is None:
                state = series.setdefault(subject, self.new_state)
            else:
                table.move_to_end(subject.text)
            if bucket > state.bucket:  # a new window (`_roll`'s own test, kept out of the call)
                self._roll(state, bucket)
            state.amount += amount
            state.calls += 1
            if state.calls <= MAX_EVIDENCE:  # (the window's evidence is its first calls)
                state.evidence.append(call.seq)
                state.pending.append(amount)
            upper = state.limit
            if state.flagged or upper is None or state.amount <= upper:
                continue
            state.flagged = True
            found.append(self._finding(subject, state, upper, now))

    def _finding(self, subject: Subject, state: _Rate, upper: float, now: float) -> Finding:
        median, _ = state.window.stats()
        return self.finding(
            subject,
            f"{subject}: {state.amount:.6g} {self.unit} in {self.bucket_s:g} s"
            f" (usual {median:.6g}, band {upper:.6g})",
            state.evidence,
            now,
            amount=round(state.amount, 6),
            calls=state.calls,
            median=round(median, 6),
            upper=round(upper, 6),
            window_s=self.bucket_s,
            unit=self.unit,
        )

    def tick(self, now: float) -> list[Finding]:
        """Forget subjects silent for longer than their history (once per window)."""
        bucket = int(now // self.bucket_s)
        if bucket == self._last_sweep:
            return []
        self._last_sweep = bucket
        for subject, state in self.series.items():
            if bucket - state.bucket > self.band.size:
                self.series.pop(subject)
        return []


def _one(call: Call) -> float:
    return 1.0


def _gb_seconds(call: Call) -> float | None:
    """`call.gb_seconds`, written out (this runs for every call)."""
    duration, memory = call.duration_ms, call.memory_mb
    if duration is None or memory is None:
        return None
    return (duration / 1000.0) * (memory / 1024.0)


def call_rate(band: Band | None = None, *, bucket_s: float = 60.0, **kw: Any) -> RateDetector:
    """Calls per window: at least twice the usual and 10 calls more, and 6 sigma out."""
    return RateDetector(
        "call_rate",
        "baseline.call_rate",
        _one,
        band or Band(k=6.0, poisson_k=3.0, rel=1.0, size=120, min_history=30),
        unit="calls",
        bucket_s=bucket_s,
        **kw,
    )


def cost(band: Band | None = None, *, bucket_s: float = 60.0, **kw: Any) -> RateDetector:
    """GB-seconds per window: at least twice the usual and 10 typical calls more, and
    6 sigma out."""
    return RateDetector(
        "cost",
        "baseline.cost",
        _gb_seconds,
        band or Band(k=6.0, rel=1.0, size=120, min_history=30),
        unit="GB-s",
        bucket_s=bucket_s,
        **kw,
    )
