"""The audit log's series, counted as plain numbers and rendered at scrape time.

`donjon_audit_append_seconds` (a histogram of each commit's time),
`donjon_audit_batch_records` (a histogram of each commit's records) and
`donjon_audit_records_total` move on every group commit, which on the warm path is
every call or two. As prometheus_client's `Histogram` and `Counter`, a commit paid
about twenty Python calls (two observations, each its checks, its bucket search and
a lock per value). Here it is one lock, two bisects and a few additions; `collect`
builds the same families, with the same names, help, buckets and values, in the same
order (tests/obs/test_audit_metrics.py renders both and compares). The lock stays: a
node that writes its log in its own process calls the listener on the writer's
thread, and `GET /metrics` reads on the loop's.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["APPEND_HELP", "BATCH_HELP", "RECORDS_HELP", "AuditCollector"]

APPEND_HELP = "Time the audit writer spent writing and committing the transaction of one batch"
BATCH_HELP = "Records per audit commit (group commit)"
RECORDS_HELP = "Audit records committed"


class _Histogram:
    """One unlabelled histogram: the count in each bucket (not cumulative; the last is
    +Inf's own) and the sum of the values."""

    __slots__ = ("bounds", "counts", "les", "sum")

    def __init__(self, buckets: Sequence[float]) -> None:
        #: Upper bounds, ascending; a value equal to a bound falls in that bucket (le).
        self.bounds = tuple(float(b) for b in buckets)
        # The library's own formatting of a bound (untyped there).
        self.les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]  # prometheus_client untyped
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def family(self, name: str, help_text: str) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for le, count in zip(self.les, self.counts, strict=True):
            cumulative += count
            buckets.append((le, cumulative))
        family = HistogramMetricFamily(name, help_text, labels=[])
        family.add_metric([], buckets, self.sum)
        return family


class AuditCollector(Collector):
    """The audit log's commits: their time, their sizes, and the records in all."""

    def __init__(self, append_buckets: Sequence[float], batch_buckets: Sequence[float]) -> None:
        self._append = _Histogram(append_buckets)
        self._batch = _Histogram(batch_buckets)
        self._records = 0
        self._lock = threading.Lock()

    def committed(self, seconds: float, records: int) -> None:
        """One commit of `records` records that took `seconds`."""
        append, batch = self._append, self._batch
        with self._lock:
            append.counts[bisect_left(append.bounds, seconds)] += 1
            append.sum += seconds
            batch.counts[bisect_left(batch.bounds, records)] += 1
            batch.sum += records
            self._records += records

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # (one commit's three series together)
            append = self._append.family("donjon_audit_append_seconds", APPEND_HELP)
            batch = self._batch.family("donjon_audit_batch_records", BATCH_HELP)
            records = CounterMetricFamily("donjon_audit_records", RECORDS_HELP, value=self._records)
        yield append
        yield batch
        yield records
