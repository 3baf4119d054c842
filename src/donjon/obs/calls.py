"""The per-call series, counted as plain numbers and rendered at scrape time.

`donjon_invocations_total` (by function and outcome) and the histogram
`donjon_invocation_duration_seconds` (by function) move on every call. As
prometheus_client's `Counter` and `Histogram` children, each call paid a lock
and about twenty Python calls (the value's `inc`, the histogram's bucket
search and its checks). Here a call is a dict update, one bisect and two
additions, on the event loop; `collect` builds the same families, with the
same names, help, labels, buckets and values (tests/obs/test_calls.py renders
both and compares), when `GET /metrics` is served on the same loop, so no lock
is needed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["CALLS_HELP", "DURATION_HELP", "CallCollector"]

CALLS_HELP = "Function calls by function and outcome (ok, or the error's class name)"
DURATION_HELP = "Wall time of a function call in the sandbox, by function"


class _Durations:
    """One function's histogram: the count in each bucket (not cumulative; the last is
    +Inf's own) and the sum of the values."""

    __slots__ = ("counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)
        self.sum = 0.0


class CallCollector(Collector):
    """Calls by (function, outcome), and their wall time by function."""

    def __init__(self, buckets: Sequence[float]) -> None:
        #: Upper bounds, ascending; a value equal to a bound falls in that bucket (le).
        self._bounds = tuple(float(b) for b in buckets)
        # The library's own formatting of a bound (untyped there).
        self._les = [floatToGoString(b) for b in self._bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self.counts: dict[tuple[str, str], int] = {}
        self.durations: dict[str, _Durations] = {}

    def observe(self, function: str, outcome: str, seconds: float) -> None:
        """One call of `function` ended with `outcome` after `seconds`."""
        key = (function, outcome)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        durations = self.durations.get(function)
        if durations is None:
            durations = self.durations[function] = _Durations(len(self._bounds))
        durations.counts[bisect_left(self._bounds, seconds)] += 1
        durations.sum += seconds

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "donjon_invocations", CALLS_HELP, labels=["function", "outcome"]
        )
        for (function, outcome), count in self.counts.items():
            calls.add_metric([function, outcome], count)
        yield calls
        duration = HistogramMetricFamily(
            "donjon_invocation_duration_seconds", DURATION_HELP, labels=["function"]
        )
        for function, series in self.durations.items():
            cumulative, buckets = 0, []
            for le, count in zip(self._les, series.counts, strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            duration.add_metric([function], buckets, series.sum)
        yield duration
