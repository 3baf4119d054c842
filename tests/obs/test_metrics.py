"""A node's metrics: its own registry, what each instrumentation site counts, the audit feed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from donjon.audit import AuditEvent, AuditLog
from donjon.obs import Metrics, auth_failure_kind
from donjon.secret import Secret
from donjon.store import connect, create_schema


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    """The value of one sample of the rendered exposition (0 if it is absent)."""
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def test_each_node_has_its_own_registry() -> None:
    """Two nodes in one process count apart (no process-wide registry)."""
    a, b = Metrics(), Metrics()
    a.invocation("resize", "ok", 0.01)
    assert sample(a, "donjon_invocations_total", function="resize", outcome="ok") == 1
    assert sample(b, "donjon_invocations_total", function="resize", outcome="ok") == 0


def test_invocation_counts_outcome_and_latency() -> None:
    """A call adds to its function's count by outcome and to its latency histogram."""
    m = Metrics()
    m.invocation("resize", "ok", 0.004)
    m.invocation("resize", "FunctionFailed", 0.3)
    assert sample(m, "donjon_invocations_total", function="resize", outcome="ok") == 1
    assert sample(m, "donjon_invocations_total", function="resize", outcome="FunctionFailed") == 1
    assert sample(m, "donjon_invocation_duration_seconds_count", function="resize") == 2
    assert (
        sample(m, "donjon_invocation_duration_seconds_bucket", function="resize", le="0.005") == 1
    )
    assert sample(m, "donjon_invocation_duration_seconds_sum", function="resize") == pytest.approx(
        0.304
    )


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        ("FunctionTimeout", "timeout"),
        ("FunctionMemoryExceeded", "memory"),
        ("FunctionBlocked", "policy"),
        ("FunctionCrashed", "crashed"),
    ],
)
def test_killed_calls_count_by_reason(outcome: str, reason: str) -> None:
    """A call the sandbox killed counts under its reason; a handler's own error does not."""
    m = Metrics()
    m.invocation("f", outcome, 1.0)
    m.invocation("f", "FunctionFailed", 1.0)
    assert sample(m, "donjon_sandbox_kills_total", reason=reason) == 1
    total = sum(
        sample(m, "donjon_sandbox_kills_total", reason=r)
        for r in ("timeout", "memory", "policy", "crashed")
    )
    assert total == 1


def test_rate_and_concurrency_limits_count_apart() -> None:
    """A rate-limited call and a call refused at the concurrency limit are told apart."""
    m = Metrics()
    m.throttled("f")
    m.throttled("f")
    m.invocation("f", "TooManyInvocations", 5.0)
    assert sample(m, "donjon_rate_limited_total", function="f", limit="rate") == 2
    assert sample(m, "donjon_rate_limited_total", function="f", limit="concurrency") == 1


def test_shed_calls_count_per_function_kept_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """`shed` keeps a labelled child per function for the hot path (up to a bound): every
    call counts on the exposition, whether its function's child was kept or not."""
    import donjon.obs.metrics as metrics_module

    monkeypatch.setattr(metrics_module, "_MAX_KEPT_CHILDREN", 1)
    m = Metrics()
    for name in ("a", "b", "a", "b", "b", "a", "a"):
        m.shed(name)
    assert sample(m, "donjon_rate_limited_total", function="a", limit="overload") == 4
    assert sample(m, "donjon_rate_limited_total", function="b", limit="overload") == 3
    m.throttled("a")  # the same counter, another limit: apart
    assert sample(m, "donjon_rate_limited_total", function="a", limit="overload") == 4
    assert sample(m, "donjon_rate_limited_total", function="a", limit="rate") == 1


@pytest.mark.parametrize(
    ("action", "reason", "kind"),
    [
        ("auth.denied", "missing credentials", "missing"),
        ("auth.denied", "invalid credentials", "invalid"),
        ("auth.denied", "revoked key", "revoked"),
        ("auth.denied", "expired key", "expired"),
        ("auth.denied", "rotated key past its overlap", "expired"),
        ("auth.denied", "sigv4: the signature does not match", "signature"),
        ("auth.denied", "sigv4: missing credentials", "missing"),
        ("auth.denied", "sigv4: headers that must be signed are not: x-amz-revoked", "invalid"),
        ("auth.denied", "jwt: the token's audience is not accepted", "invalid"),
        ("authz.denied", "function:invoke on x denied: no statement allows it", "forbidden"),
        ("input.refused", "JSON nested past 64 levels", None),
    ],
)
def test_auth_failure_kinds(action: str, reason: str, kind: str | None) -> None:
    """Denials map to a small fixed set of kinds; a refused input is no auth failure."""
    assert auth_failure_kind(action, reason) == kind


def test_every_kind_and_reason_shows_before_the_first() -> None:
    """A scrape lists every auth failure kind and kill reason at 0 (rates need a start)."""
    text = Metrics().render().decode()
    for kind in ("missing", "invalid", "revoked", "expired", "signature", "forbidden"):
        assert f'donjon_auth_failures_total{{kind="{kind}"}} 0.0' in text
    for reason in ("timeout", "memory", "policy", "crashed"):
        assert f'donjon_sandbox_kills_total{{reason="{reason}"}} 0.0' in text
    assert "_created" not in text


def test_audit_commits_are_measured_through_the_listener(tmp_path: Path) -> None:
    """A real audit log's commits feed the append-time and batch-size histograms."""
    engine = connect(f"sqlite:///{tmp_path / 'audit.db'}")
    create_schema(engine)
    audit = AuditLog(engine, Secret(b"k" * 32))
    m = Metrics()
    audit.add_listener(m.audit_committed)
    audit.start()

    async def five() -> None:  # in flight together: one or more group commits
        await asyncio.gather(
            *(audit.record(AuditEvent("system", "test.event", f"t{i}", "ok", {})) for i in range(5))
        )

    try:
        asyncio.run(five())
    finally:
        audit.stop()
        engine.dispose()
    assert sample(m, "donjon_audit_records_total") == 5
    batches = sample(m, "donjon_audit_batch_records_count")
    assert 1 <= batches <= 5
    assert sample(m, "donjon_audit_batch_records_sum") == 5
    assert sample(m, "donjon_audit_append_seconds_count") == batches
    assert sample(m, "donjon_audit_append_seconds_sum") > 0
