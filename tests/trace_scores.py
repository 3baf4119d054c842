"""Where tests/monitor/test_trace.py leaves the detectors' scores for the session's summary
(the `pytest_terminal_summary` hook in tests/conftest.py prints them, if the test ran)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

__all__ = ["SCORES", "Score", "Trace", "summary_lines"]


@dataclass(frozen=True)
class Score:
    """One detector's result on the trace (findings deduplicated as the monitor does)."""

    detector: str
    findings: int
    true: int
    anomalies: int
    found: int

    @property
    def precision(self) -> float | None:
        return self.true / self.findings if self.findings else None

    @property
    def recall(self) -> float | None:
        return self.found / self.anomalies if self.anomalies else None


@dataclass(frozen=True)
class Trace:
    """What the trace was, and how each detector scored on it."""

    hours: float
    calls: int
    anomalies: int
    scores: tuple[Score, ...]


SCORES = pytest.StashKey[Trace]()


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def summary_lines(trace: Trace) -> list[str]:
    """The table the session prints."""
    lines = [
        f"synthetic trace: {trace.hours:g} h on a fake clock, {trace.calls} calls,"
        f" {trace.anomalies} injected anomalies",
        f"{'detector':<12} {'findings':>8} {'true':>5} {'false':>5}"
        f" {'anomalies':>9} {'found':>5} {'precision':>9} {'recall':>6}",
    ]
    for s in trace.scores:
        lines.append(
            f"{s.detector:<12} {s.findings:>8} {s.true:>5} {s.findings - s.true:>5}"
            f" {s.anomalies:>9} {s.found:>5} {_ratio(s.precision):>9} {_ratio(s.recall):>6}"
        )
    return lines
