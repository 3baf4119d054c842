"""The audit log's series as plain numbers (obs/audit_metrics.py) render what
prometheus_client's own `Histogram` and `Counter` render for the same commits, byte for
byte, and a node's whole `/metrics` keeps its families' order."""

from __future__ import annotations

import random
import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import generate_latest

from donjon.audit import AuditEvent
from donjon.audit.log import CommittedBatch, CommittedRecord
from donjon.obs.audit_metrics import APPEND_HELP, BATCH_HELP, RECORDS_HELP, AuditCollector
from donjon.obs.metrics import _APPEND_BUCKETS, _BATCH_BUCKETS, Metrics


def _library(commits: list[tuple[float, int]]) -> bytes:
    """What the three series rendered as prometheus_client's own, before."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped library
    registry = CollectorRegistry()
    append = Histogram(
        "donjon_audit_append_seconds", APPEND_HELP, buckets=_APPEND_BUCKETS, registry=registry
    )
    batch = Histogram(
        "donjon_audit_batch_records", BATCH_HELP, buckets=_BATCH_BUCKETS, registry=registry
    )
    records = Counter("donjon_audit_records", RECORDS_HELP, registry=registry)
    for seconds, count in commits:
        append.observe(seconds)
        batch.observe(count)
        records.inc(count)
    return generate_latest(registry)


def _plain(commits: list[tuple[float, int]]) -> bytes:
    registry = CollectorRegistry()
    collector = AuditCollector(_APPEND_BUCKETS, _BATCH_BUCKETS)
    registry.register(collector)
    for seconds, count in commits:
        collector.committed(seconds, count)
    return generate_latest(registry)


def test_no_commit_yet_renders_the_same_empty_families() -> None:
    """Before the first commit: every bucket at 0, as the library's."""
    assert _plain([]) == _library([])


def test_values_on_every_bound_between_them_and_past_the_last_render_the_same() -> None:
    """A value equal to a bound falls in that bucket (le), as the library's."""
    seconds = [0.0, *_APPEND_BUCKETS, *(b * 0.999 for b in _APPEND_BUCKETS)]
    seconds += [b * 1.001 for b in _APPEND_BUCKETS] + [1e6, 1e-9]
    sizes = [1, *(int(b) for b in _BATCH_BUCKETS), *(int(b) + 1 for b in _BATCH_BUCKETS), 10**6]
    commits = [(s, sizes[i % len(sizes)]) for i, s in enumerate(seconds)]
    commits += [(seconds[i % len(seconds)], n) for i, n in enumerate(sizes)]
    assert _plain(commits) == _library(commits)


def test_many_random_commits_render_the_same() -> None:
    """5,000 commits of random times and sizes: the same bytes."""
    rng = random.Random(206)  # noqa: S311 - commit times for a test, not a secret
    commits = [(rng.expovariate(500.0), rng.randint(1, 2000)) for _ in range(5000)]
    assert _plain(commits) == _library(commits)


def test_commits_from_threads_are_all_counted() -> None:
    """The listener runs on the writer's thread in-process: commits from several threads
    at once are all counted (the collector locks)."""
    collector = AuditCollector(_APPEND_BUCKETS, _BATCH_BUCKETS)

    def commit() -> None:
        for _ in range(20_000):
            collector.committed(0.002, 3)

    threads = [threading.Thread(target=commit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    registry = CollectorRegistry()
    registry.register(collector)
    assert registry.get_sample_value("donjon_audit_records_total") == 240_000
    assert registry.get_sample_value("donjon_audit_batch_records_count") == 80_000
    assert registry.get_sample_value("donjon_audit_append_seconds_count") == 80_000


def test_a_nodes_metrics_keep_the_audit_families_in_their_place() -> None:
    """`Metrics.audit_committed` feeds the three series, rendered between the rate limits'
    counter and the queue's gauge, as the library's metrics registered there were."""
    m = Metrics()
    event = AuditEvent("system", "test.event", "t", "ok", {})
    batch = CommittedBatch((CommittedRecord(1, 0.0, event), CommittedRecord(2, 0.0, event)), 0.003)
    m.audit_committed(batch)
    text = m.render()
    names = [line.split()[2] for line in text.decode().splitlines() if line.startswith("# TYPE")]
    assert names == [
        "donjon_invocations_total",
        "donjon_invocation_duration_seconds",
        "donjon_sandbox_kills_total",
        "donjon_auth_failures_total",
        "donjon_rate_limited_total",
        "donjon_audit_append_seconds",
        "donjon_audit_batch_records",
        "donjon_audit_records_total",
        "donjon_queue_pending",
    ]
    assert _library([(0.003, 2)]) in text
