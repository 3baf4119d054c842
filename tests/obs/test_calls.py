"""The per-call series as plain numbers (obs/calls.py) render what prometheus_client's own
`Counter` and `Histogram` render for the same calls, byte for byte."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import generate_latest

from donjon.obs.calls import CALLS_HELP, DURATION_HELP, CallCollector
from donjon.obs.metrics import _DURATION_BUCKETS, Metrics

#: Names an outcome or a function can hold, with what the exposition must escape.
NAMES = ["echo", "slow-fn", 'q"uote', "back\\slash", "new\nline"]
OUTCOMES = ["ok", "FunctionTimeout", "TooManyInvocations", "CallShed"]


def _library(calls: list[tuple[str, str, float]]) -> bytes:
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    counter = Counter("donjon_invocations", CALLS_HELP, ["function", "outcome"], registry=registry)
    histogram = Histogram(
        "donjon_invocation_duration_seconds",
        DURATION_HELP,
        ["function"],
        buckets=_DURATION_BUCKETS,
        registry=registry,
    )
    for function, outcome, seconds in calls:
        counter.labels(function, outcome).inc()
        histogram.labels(function).observe(seconds)
    return generate_latest(registry)


def _plain(calls: list[tuple[str, str, float]]) -> bytes:
    registry = CollectorRegistry()
    collector = CallCollector(_DURATION_BUCKETS)
    registry.register(collector)
    for function, outcome, seconds in calls:
        collector.observe(function, outcome, seconds)
    return generate_latest(registry)


def test_no_call_yet_renders_the_same_empty_families() -> None:
    assert _plain([]) == _library([])


def test_values_on_every_bound_between_them_and_past_the_last_render_the_same() -> None:
    values = [0.0, *_DURATION_BUCKETS]
    values += [b * 0.999 for b in _DURATION_BUCKETS] + [b * 1.001 for b in _DURATION_BUCKETS]
    values += [1e6, 1e-9]
    calls = [(NAMES[i % len(NAMES)], OUTCOMES[i % 3], v) for i, v in enumerate(values)]
    assert _plain(calls) == _library(calls)


def test_many_random_calls_render_the_same() -> None:
    rng = random.Random(14)  # noqa: S311 - call times for a test, not a secret
    calls = [(rng.choice(NAMES), rng.choice(OUTCOMES), rng.expovariate(20.0)) for _ in range(5000)]
    text = _plain(calls)
    assert text == _library(calls)
    assert b'function="q\\"uote"' in text and b'function="new\\nline"' in text


def test_the_nodes_metrics_count_a_call_and_its_kill() -> None:
    """Through `Metrics.invocation`, as the invoke path calls it: the call, its time and
    the kill it ended with."""
    metrics = Metrics()
    metrics.invocation("echo", "ok", 0.003)
    metrics.invocation("echo", "FunctionTimeout", 10.5)
    text = metrics.render().decode()
    assert 'donjon_invocations_total{function="echo",outcome="ok"} 1.0' in text
    assert 'donjon_invocations_total{function="echo",outcome="FunctionTimeout"} 1.0' in text
    assert 'donjon_invocation_duration_seconds_bucket{function="echo",le="0.005"} 1.0' in text
    assert 'donjon_invocation_duration_seconds_bucket{function="echo",le="30.0"} 2.0' in text
    assert 'donjon_invocation_duration_seconds_count{function="echo"} 2.0' in text
    assert 'donjon_invocation_duration_seconds_sum{function="echo"} 10.503' in text
    assert 'donjon_sandbox_kills_total{reason="timeout"} 1.0' in text
