"""What the monitor feeds the records of one action to, in its detectors' order.

The engine asks once per action (engine.py keeps the answer): the detectors that
read records of that action (their `actions`, detector.py), in the order they
were given, with one change: a run of learned baselines side by side
(`SeriesDetector`s: call rate, error rate, duration, cost) is fed through one
`SeriesPass`. The pass reads the record once for all of them (the call, its
time and its subjects) and hands the call to each one's `see_all` (`see`, subject
by subject), as each one's `observe` would: the same findings in the same order,
without a lookup of the record's view and a loop of its own per baseline.

What the engine promises per detector holds per baseline inside the pass: one
baseline's exception is logged under its name (no more than once a minute with its
traceback: faults.py), costs that baseline the record's findings and nothing else,
and the others still see the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from donjon.audit.log import CommittedRecord
from donjon.monitor.baselines import SeriesDetector, read_view
from donjon.monitor.detector import Detector
from donjon.monitor.faults import FaultLog
from donjon.monitor.findings import Finding

__all__ = ["Observer", "SeriesPass", "route"]


class Observer(Protocol):
    """One step of a route: a detector, or several fed together."""

    name: str

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]: ...


class SeriesPass:
    """Learned baselines fed together: a record read once, each baseline in its turn."""

    __slots__ = ("detectors", "faults", "name")

    def __init__(self, detectors: Sequence[SeriesDetector[Any]], faults: FaultLog) -> None:
        self.detectors = tuple(detectors)
        self.name = "+".join(d.name for d in self.detectors)
        self.faults = faults

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        change, call, at, subjects = read_view(record, now)
        found: list[Finding] = []
        if call is None:
            if change is not None:  # a deploy or a removal: each baseline resets itself
                for detector in self.detectors:
                    try:
                        found += detector.observe(record, now)
                    except Exception:  # one baseline's bug must not blind the others
                        self._failed(detector, record)
            return found
        for detector in self.detectors:
            mark = len(found) if found else 0  # (most records find nothing)
            try:
                detector.see_all(subjects, call, at, found)
            except Exception:  # as `observe` failing: none of this baseline's findings
                del found[mark:]
                self._failed(detector, record)
        return found

    def _failed(self, detector: SeriesDetector[Any], record: CommittedRecord) -> None:
        self.faults.exception(
            detector.name, "monitor: detector %s failed on seq %d", detector.name, record.seq
        )


def _plain(detector: SeriesDetector[Any]) -> bool:
    """Whether the baseline observes as every baseline does (a subclass that reads records
    its own way is fed on its own)."""
    return type(detector).observe is SeriesDetector.observe


def route(detectors: Sequence[Detector], action: str, faults: FaultLog) -> list[Observer]:
    """The steps a record of `action` goes through: the detectors that read it, in their
    order, each run of two or more learned baselines as one `SeriesPass` (which logs its
    baselines' failures to `faults`)."""
    reading = [d for d in detectors if action in getattr(d, "actions", (action,))]
    steps: list[Observer] = []
    run: list[SeriesDetector[Any]] = []
    for detector in [*reading, None]:
        if isinstance(detector, SeriesDetector) and _plain(detector):
            run.append(detector)
            continue
        if len(run) > 1:
            steps.append(SeriesPass(run, faults))
        else:
            steps.extend(run)
        run = []
        if detector is not None:
            steps.append(detector)
    return steps
