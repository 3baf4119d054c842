"""The alerts index: listing without reading the log, and catching up after a crash."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from donjon.audit.log import AuditEvent
from donjon.monitor import alerts as alerts_module
from donjon.monitor.alerts import ACTOR, RAISED, AlertsError, AlertStore
from monitor_support import make_engine, make_log


def _alert_event(kind: str, n: int) -> AuditEvent:
    detail = {
        "id": f"alert_{n}",
        "kind": kind,
        "detector": "d",
        "mode": "alert",
        "summary": f"alert {n}",
        "evidence": [1],
        "detail": {},
    }
    return AuditEvent(ACTOR, RAISED, "source:x", "high", detail)


def test_catch_up_indexes_alert_records_missing_from_the_index(tmp_path: Path) -> None:
    """Alert records written after the watermark (a crash before indexing) are indexed at start."""
    engine = make_engine(tmp_path)
    store = AlertStore(engine)
    log = make_log(engine)
    log.record_now(AuditEvent("key:a", "function.invoke", "f@1", "ok"))
    assert store.catch_up(None) == 0  # the monitor never ran: the log has no alerts
    assert store.through() == 1
    log.record_now(_alert_event("egress.refused", 1))
    log.record_now(AuditEvent("key:a", "function.invoke", "f@1", "ok"))
    log.record_now(_alert_event("auth.credential_stuffing", 2))
    log.record_now(AuditEvent("anonymous", RAISED, "x", "high", {"kind": "forged"}))  # not ours
    assert store.catch_up(store.through()) == 2
    assert store.catch_up(store.through()) == 2  # again: the same rows, nothing doubled
    page = store.listing()
    assert [(a["seq"], a["kind"]) for a in page.alerts] == [
        (2, "egress.refused"),
        (4, "auth.credential_stuffing"),
    ]
    assert [r.seq for r in store.records_after(1, 2)] == [4, 5]  # the newest, oldest first


def test_list_filters_by_kind_time_and_pages(tmp_path: Path) -> None:
    """kind, since, n and before select from the index; `more` says older ones match."""
    engine = make_engine(tmp_path)
    store = AlertStore(engine)
    for seq in range(1, 8):
        kind = "egress.refused" if seq % 2 else "deploy.scan_skipped"
        store.add_now({"seq": seq, "ts": 100.0 + seq, "kind": kind, "summary": str(seq)})
    assert [a["seq"] for a in store.listing(kind="egress.refused").alerts] == [1, 3, 5, 7]
    assert [a["seq"] for a in store.listing(since=105.0).alerts] == [5, 6, 7]
    page = store.listing(n=2)
    assert ([a["seq"] for a in page.alerts], page.more) == ([6, 7], True)
    page = store.listing(n=2, before=6)
    assert [a["seq"] for a in page.alerts] == [4, 5]
    store.add_now({"seq": 7, "ts": 107.0, "kind": "x"})  # again: harmless
    assert len(store.listing(n=100).alerts) == 7


def test_list_bounds_n(tmp_path: Path) -> None:
    """n outside 1..1000 is an error, not a scan of everything."""
    with pytest.raises(AlertsError):
        AlertStore(make_engine(tmp_path)).listing(n=100_000)


def test_watermark_never_moves_back(tmp_path: Path) -> None:
    """save_through keeps the highest seq."""
    engine = make_engine(tmp_path)
    store = AlertStore(engine)
    store.save_through(10)
    store.save_through(5)
    assert store.through() == 10
    db = engine.url.database
    assert db is not None
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT through FROM alerts_indexed").fetchall() == [(10,)]


def test_list_keeps_only_what_the_reader_reaches_and_pages(tmp_path: Path) -> None:
    """With `keep` (a reader scoped to some functions), n kept alerts, newest, and `more`
    when older kept ones remain; `before` pages on among them."""
    engine = make_engine(tmp_path)
    store = AlertStore(engine)
    for seq in range(1, 10):
        subject = "function:mine" if seq % 3 == 0 else "function:theirs"
        store.add_now({"seq": seq, "ts": 100.0 + seq, "kind": "k", "subject": subject})

    def mine(alert: Mapping[str, Any]) -> bool:
        return alert.get("subject") == "function:mine"

    page = store.listing(n=2, keep=mine)
    assert ([a["seq"] for a in page.alerts], page.more) == ([6, 9], True)
    page = store.listing(n=2, keep=mine, before=6)
    assert ([a["seq"] for a in page.alerts], page.more) == ([3], False)


def test_a_kept_listing_that_runs_out_of_reading_says_where_to_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filtered listing reads at most MAX_SCAN rows: one that ran out names the seq to
    go on before (`go_on`), and going on from there finds the older kept alerts."""
    monkeypatch.setattr(alerts_module, "MAX_SCAN", 3)
    monkeypatch.setattr(alerts_module, "MAX_LIST", 3)  # one chunk is MAX_LIST rows
    engine = make_engine(tmp_path)
    store = AlertStore(engine)
    for seq in range(1, 10):
        subject = "function:mine" if seq in (1, 8) else "function:theirs"
        store.add_now({"seq": seq, "ts": 100.0 + seq, "kind": "k", "subject": subject})

    def mine(alert: Mapping[str, Any]) -> bool:
        return alert.get("subject") == "function:mine"

    page = store.listing(n=2, keep=mine)
    assert ([a["seq"] for a in page.alerts], page.go_on) == ([8], 7)
    page = store.listing(n=2, keep=mine, before=page.go_on)
    assert ([a["seq"] for a in page.alerts], page.go_on) == ([], 4)
    page = store.listing(n=2, keep=mine, before=page.go_on)
    assert ([a["seq"] for a in page.alerts], page.go_on) == ([1], 1)  # it read 3 rows again
    page = store.listing(n=2, keep=mine, before=page.go_on)
    assert ([a["seq"] for a in page.alerts], page.go_on) == ([], None)  # the end
