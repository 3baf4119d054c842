"""The deterministic rules, each with a record it must catch and one it must not."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from donjon.audit.log import AuditEvent, CommittedRecord
from donjon.monitor.rules import AuthFailures, EgressRefused, SandboxViolation, ScanSkipped

_SEQ = itertools.count(1)
T0 = 1_000_000.0


def _rec(action: str, outcome: str, detail: Mapping[str, Any], **kw: str) -> CommittedRecord:
    event = AuditEvent(
        kw.get("actor", "anonymous"), action, kw.get("target", "/v1/x"), outcome, detail
    )
    return CommittedRecord(next(_SEQ), T0, event)


def _denial(client: str, count: int = 1, **detail: Any) -> CommittedRecord:
    return _rec("auth.denied", "denied", {"client": client, "count": count, **detail})


def test_burst_from_one_source_is_credential_stuffing() -> None:
    """20 failures from one address (one record at once, one aggregate) raise a finding."""
    rule = AuthFailures(per_source=20, window_s=300)
    first = _denial("203.0.113.7")
    assert rule.observe(first, T0) == []
    aggregate = _denial("203.0.113.7", count=19, aggregated=True)
    (finding,) = rule.observe(aggregate, T0 + 60)
    assert finding.kind == "auth.credential_stuffing"
    assert str(finding.subject) == "source:203.0.113.7"
    assert finding.evidence == (first.seq, aggregate.seq)
    assert finding.detail["failures"] == 20


def test_failures_spread_over_time_are_not_stuffing() -> None:
    """The same 20 failures spread past the window raise nothing."""
    rule = AuthFailures(per_source=20, window_s=300)
    findings = [rule.observe(_denial("198.51.100.1"), T0 + i * 60) for i in range(20)]
    assert not any(findings)


def test_live_denials_fire_before_the_aggregate_is_written() -> None:
    """Counted live (DenialLog's listener), a burst is found at the next tick, resting on
    the source's first record, written at once."""
    rule = AuthFailures(per_source=5, window_s=300)
    event = AuditEvent("anonymous", "auth.denied", "/v1/x", "denied", {"client": "192.0.2.9"})
    for _ in range(5):
        rule.note_denial(event, "192.0.2.9", T0)
    assert rule.tick(T0 + 1) == []  # no record of it yet: no evidence, no finding
    first = _denial("192.0.2.9")
    rule.observe(first, T0 + 1)
    (finding,) = rule.tick(T0 + 2)
    assert finding.evidence == (first.seq,)
    assert finding.detail["failures"] == 5


def test_failures_across_many_keys_are_stuffing() -> None:
    """Failures naming 10 different keys (told live), from 10 addresses, raise one
    node-wide finding resting on the denial records."""
    rule = AuthFailures(per_source=100, distinct_keys=10, window_s=300)
    found = []
    for i in range(10):
        client = f"10.0.0.{i}"
        event = AuditEvent("anonymous", "auth.denied", "/v1/x", "denied", {"client": client})
        rule.note_denial(event, client, T0 + i, named=f"{i:016x}")
        found += rule.observe(_denial(client), T0 + i)
    assert [str(f.subject) for f in found] == ["node:authentication"]
    assert found[0].detail == {"distinct_keys": 10}


def test_failures_of_one_key_are_not_many_keys() -> None:
    """Ten failures of the same key from ten addresses are not 'across keys'."""
    rule = AuthFailures(per_source=100, distinct_keys=10, window_s=300)
    found = []
    for i in range(10):
        client = f"10.0.1.{i}"
        event = AuditEvent("anonymous", "auth.denied", "/v1/x", "denied", {"client": client})
        rule.note_denial(event, client, T0 + i, named="00000000000000aa")
        found += rule.observe(_denial(client), T0 + i)
    assert found == []


def test_sigv4_key_ids_in_records_count_as_keys() -> None:
    """A SigV4 denial records the key id it named: counted without the live feed."""
    rule = AuthFailures(per_source=100, distinct_keys=3, window_s=300)
    found = []
    for i in range(3):
        found += rule.observe(_denial(f"10.0.2.{i}", key_id=f"{i:016x}"), T0 + i)
    assert [str(f.subject) for f in found] == ["node:authentication"]


def test_authorization_denials_are_not_authentication_failures() -> None:
    """authz.denied (a valid key refused an action) is not counted as stuffing."""
    rule = AuthFailures(per_source=1, window_s=300)
    assert rule.observe(_rec("authz.denied", "denied", {"client": "10.1.1.1"}), T0) == []


def test_tracked_sources_are_bounded() -> None:
    """Past max_sources, the oldest source is forgotten: memory stays bounded."""
    rule = AuthFailures(per_source=1000, window_s=300, max_sources=100)
    for i in range(1000):
        rule.observe(_denial(f"10.2.{i // 250}.{i % 250}"), T0 + i * 0.01)
    assert len(rule._sources) <= 100
    event = AuditEvent("anonymous", "auth.denied", "/v1/x", "denied", {"client": "10.3.0.1"})
    for i in range(10_000):  # a flood from one source keeps a bounded tally
        rule.note_denial(event, "10.3.0.1", T0 + 20 + i * 0.001)
    assert len(rule._sources["10.3.0.1"].live) <= 1000 + 64


def test_refused_egress_is_found() -> None:
    """An egress.connect denied names the function and the destination."""
    record = _rec(
        "egress.connect",
        "denied",
        {
            "function": "fetcher",
            "version": 3,
            "destination": "evil.example:443",
            "reason": "not granted",
        },
        actor="function:fetcher",
        target="fetcher@3",
    )
    (finding,) = EgressRefused().observe(record, T0)
    assert (finding.kind, str(finding.subject)) == ("egress.refused", "function:fetcher")
    assert finding.detail["destination"] == "evil.example:443"


def test_allowed_egress_is_not_found() -> None:
    """An allowed connection is not a finding."""
    record = _rec("egress.connect", "allowed", {"function": "f"}, target="f@1")
    assert EgressRefused().observe(record, T0) == []


def test_blocked_process_call_is_a_sandbox_violation() -> None:
    """policy.block (a process call seccomp stopped) is a high-severity violation."""
    record = _rec(
        "policy.block",
        "blocked",
        {"function": "f", "policy": "child_processes", "seen": "execve /bin/sh"},
        target="f@2",
    )
    (finding,) = SandboxViolation().observe(record, T0)
    assert (finding.kind, finding.severity, str(finding.subject)) == (
        "sandbox.violation",
        "high",
        "function:f",
    )


def test_oom_kill_is_a_sandbox_violation() -> None:
    """A call killed for its memory is found, keyed apart from the policies' findings on
    the same function (deduplicated apart: a kill gets no response, a policy block does);
    a call that merely failed is not found."""
    oom = _rec("function.invoke", "FunctionMemoryExceeded", {}, target="hog@1")
    (finding,) = SandboxViolation().observe(oom, T0)
    assert finding.detail["outcome"] == "FunctionMemoryExceeded"
    assert finding.key == "FunctionMemoryExceeded"
    policy = _rec("policy.block", "blocked", {"function": "hog", "policy": "p"}, target="hog@1")
    assert SandboxViolation().observe(policy, T0)[0].key == ""
    failed = _rec("function.invoke", "FunctionFailed", {}, target="hog@1")
    assert SandboxViolation().observe(failed, T0) == []


def test_deploy_without_scan_is_found() -> None:
    """function.deploy with unsafe_skip_scan raises deploy.scan_skipped; a scanned one not."""
    skipped = _rec("function.deploy", "ok", {"unsafe_skip_scan": True}, actor="key:a", target="f@4")
    (finding,) = ScanSkipped().observe(skipped, T0)
    assert (finding.kind, str(finding.subject)) == ("deploy.scan_skipped", "function:f")
    scanned = _rec("function.deploy", "ok", {"findings": 0}, actor="key:a", target="f@5")
    assert ScanSkipped().observe(scanned, T0) == []
