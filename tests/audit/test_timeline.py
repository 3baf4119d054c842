"""The forensic timeline over a real audit log (SQLite file): filters, order, paging, seqs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from donjon.audit.log import AuditEvent, AuditLog
from donjon.audit.timeline import TimelineFilter, category, describe, read_timeline
from donjon.secret import Secret
from donjon.store import connect, create_schema

KEY = Secret(b"t" * 32)

#: A small incident: a deploy, calls by two keys, a stuffing source, egress, an alert,
#: its response and the release.
EVENTS = [
    AuditEvent("key:admin", "key.create", "key:bob", "ok", {"request_id": "r1", "role": "invoker"}),
    AuditEvent("key:dev", "function.deploy", "fetch@1", "ok", {"request_id": "r2", "findings": 0}),
    AuditEvent(
        "key:bob",
        "function.invoke",
        "fetch@1",
        "ok",
        {"request_id": "r3", "duration_ms": 3.5, "trigger": "invoke"},
    ),
    AuditEvent(
        "function:fetch",
        "egress.connect",
        "fetch@1",
        "denied",
        {"function": "fetch", "request_id": "r3", "destination": "evil.test:443", "count": 1},
    ),
    AuditEvent(
        "anonymous",
        "auth.denied",
        "/v1/functions/fetch/invoke",
        "denied",
        {"request_id": "r4", "client": "203.0.113.9", "reason": "invalid credentials"},
    ),
    AuditEvent(
        "system:monitor",
        "alert.raised",
        "function:fetch",
        "high",
        {"kind": "egress.refused", "summary": "fetch tried evil.test", "evidence": [4]},
    ),
    AuditEvent(
        "system:monitor",
        "response.quarantine",
        "function:fetch",
        "ok",
        {"alert_seq": 6, "reason": "egress.refused: fetch tried evil.test"},
    ),
    AuditEvent(
        "key:carol", "function.invoke", "other@2", "ok", {"request_id": "r5", "trigger": "http"}
    ),
    AuditEvent("key:admin", "function.release", "function:fetch", "ok", {"request_id": "r6"}),
    AuditEvent("key:admin", "key.revoke", "key:bob", "ok", {"request_id": "r7"}),
]


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    """A log holding EVENTS, one second apart from t=1000 (seq n at t=1000+n)."""
    engine = connect(f"sqlite:///{tmp_path / 't.db'}")
    create_schema(engine)
    now = [1000.0]
    # The writer stamps each batch with its clock: one record per second here.
    log = AuditLog(engine, KEY, clock=lambda: now[0])
    for n, event in enumerate(EVENTS, start=1):
        now[0] = 1000.0 + n
        log.record_now(event)
    return engine


def _seqs(engine: Engine, flt: TimelineFilter, **kw: Any) -> list[int]:
    return [r["seq"] for r in read_timeline(engine, flt, **kw).records]


def test_whole_timeline_in_order_with_seqs_and_categories(engine: Engine) -> None:
    """Without filters every record comes back in seq order, each with its category."""
    page = read_timeline(engine, TimelineFilter())
    assert [r["seq"] for r in page.records] == list(range(1, 11))
    assert page.next_after is None
    assert [r["category"] for r in page.records] == [
        "key",
        "deploy",
        "invoke",
        "egress",
        "denial",
        "alert",
        "response",
        "invoke",
        "response",
        "key",
    ]


def test_function_filter_tells_the_functions_story(engine: Engine) -> None:
    """--function: its deploy, calls, egress, the alert about it, quarantine and release."""
    assert _seqs(engine, TimelineFilter(function="fetch")) == [2, 3, 4, 6, 7, 9]
    assert _seqs(engine, TimelineFilter(function="fetc")) == []  # a prefix is another name


def test_principal_filter_is_what_it_did_and_what_was_done_to_it(engine: Engine) -> None:
    """--principal: bob's creation, his call, his revocation; a bare key id means key:ID."""
    assert _seqs(engine, TimelineFilter(principal="key:bob")) == [1, 3, 10]
    assert _seqs(engine, TimelineFilter(principal="bob")) == [1, 3, 10]


def test_request_and_source_filters(engine: Engine) -> None:
    """--request: every record of that request (the call and its egress); --source: a client."""
    assert _seqs(engine, TimelineFilter(request_id="r3")) == [3, 4]
    assert _seqs(engine, TimelineFilter(source="203.0.113.9")) == [5]
    assert _seqs(engine, TimelineFilter(function="fetch", request_id="r3")) == [3, 4]


def test_since_and_until_bound_the_time(engine: Engine) -> None:
    """--since finds its first record by bisecting; --until ends the timeline."""
    assert _seqs(engine, TimelineFilter(since=1004.0, until=1007.0)) == [4, 5, 6, 7]
    assert _seqs(engine, TimelineFilter(since=1004.5)) == [5, 6, 7, 8, 9, 10]
    assert _seqs(engine, TimelineFilter(since=2000.0)) == []
    page = read_timeline(engine, TimelineFilter(until=1002.0))
    assert [r["seq"] for r in page.records] == [1, 2]
    assert page.next_after is None and page.scanned == 3


def test_pages_go_on_where_the_last_ended(engine: Engine) -> None:
    """A page stops at `limit` matches or after `scan` records, and says where to go on."""
    first = read_timeline(engine, TimelineFilter(function="fetch"), limit=4)
    assert [r["seq"] for r in first.records] == [2, 3, 4, 6]
    assert first.next_after == 6
    rest = read_timeline(engine, TimelineFilter(function="fetch"), after=6, limit=4)
    assert [r["seq"] for r in rest.records] == [7, 9]
    assert rest.next_after is None
    bounded = read_timeline(engine, TimelineFilter(principal="key:carol"), scan=5)
    assert bounded.records == [] and bounded.next_after == 5 and bounded.scanned == 5
    assert _seqs(engine, TimelineFilter(principal="key:carol"), after=5) == [8]


def test_descriptions_say_what_happened() -> None:
    """Each kind of record reads as a line a person understands."""
    deploy = {"action": "function.deploy", "target": "f@2", "outcome": "ok"}
    assert "scan SKIPPED" in describe({**deploy, "detail": {"unsafe_skip_scan": True}})
    assert "scan: 3 finding(s)" in describe({**deploy, "detail": {"findings": 3}})
    alert = {
        "action": "alert.raised",
        "target": "source:1.2.3.4",
        "outcome": "high",
        "detail": {"kind": "auth.credential_stuffing", "summary": "40 failures", "evidence": [7]},
    }
    assert describe(alert) == (
        "ALERT high auth.credential_stuffing on source:1.2.3.4: 40 failures (evidence 7)"
    )
    response = {"action": "response.throttle", "target": "source:1.2.3.4", "outcome": "ok"}
    assert describe({**response, "detail": {"alert_seq": 8}}) == (
        "response.throttle source:1.2.3.4: ok (alert 8)"
    )
    assert category("throttle.denied") == "throttle"
    assert category("something.new") == "other"
