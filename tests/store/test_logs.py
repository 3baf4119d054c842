"""Reading what functions printed and the audit trail's end, as the admin API serves them."""

from __future__ import annotations

from pathlib import Path

from donjon.audit import AuditEvent, AuditLog
from donjon.audit.log import InvocationLog
from donjon.secret import Secret
from donjon.store import Engine, InvocationLogStore, connect, create_schema

KEY = Secret(b"k" * 32)


def _engine(tmp_path: Path) -> Engine:
    engine = connect(f"sqlite:///{tmp_path / 'donjon.db'}")
    create_schema(engine)
    return engine


def _call(audit: AuditLog, function: str, i: int) -> None:
    audit.record_now(
        AuditEvent("key:a", "function.invoke", f"{function}@1", "ok", {"i": i}),
        InvocationLog(function, 1, f"{function}-{i}", "ok", f"line {i}\n"),
    )


def test_recent_logs_are_the_functions_last_n_oldest_first(tmp_path: Path) -> None:
    """recent(f, n) holds only f's entries, the last n of them, in call order, without ids."""
    engine = _engine(tmp_path)
    audit = AuditLog(engine, KEY)
    for i in range(5):
        _call(audit, "f", i)
        _call(audit, "g", i)
    rows = InvocationLogStore(engine).recent("f", 3)
    assert [r["output"] for r in rows] == ["line 2\n", "line 3\n", "line 4\n"]
    assert {r["function"] for r in rows} == {"f"}
    assert all("id" not in r for r in rows)
    assert InvocationLogStore(engine).recent("nobody", 10) == []


def test_audit_tail_is_the_last_n_records_oldest_first(tmp_path: Path) -> None:
    """tail(n) parses the last n records, in chain order."""
    engine = _engine(tmp_path)
    audit = AuditLog(engine, KEY)
    for i in range(4):
        _call(audit, "f", i)
    tail = audit.tail(2)
    assert [r["detail"]["i"] for r in tail] == [2, 3]
    assert [r["seq"] for r in tail] == [3, 4]


def test_entries_carry_a_cursor_and_the_calls_report(tmp_path: Path) -> None:
    """Each entry has its cursor, and the duration and peak memory written with it."""
    engine = _engine(tmp_path)
    audit = AuditLog(engine, KEY)
    audit.record_now(
        AuditEvent("key:a", "function.invoke", "f@1", "ok", {}),
        InvocationLog("f", 1, "r-1", "ok", "", duration_ms=12.5, memory_kb=10240),
    )
    (row,) = InvocationLogStore(engine).recent("f", 10)
    assert isinstance(row["cursor"], int)
    assert (row["output"], row["duration_ms"], row["memory_kb"]) == ("", 12.5, 10240)


def test_after_a_cursor_gives_the_next_entries_oldest_first(tmp_path: Path) -> None:
    """after=c lists the first n entries newer than c: what `logs -f` polls for."""
    engine = _engine(tmp_path)
    audit = AuditLog(engine, KEY)
    for i in range(5):
        _call(audit, "f", i)
    store = InvocationLogStore(engine)
    first = store.recent("f", 1)[0]["cursor"]  # the newest
    assert store.recent("f", 10, after=first) == []
    every = store.recent("f", 10)
    later = store.recent("f", 2, after=every[1]["cursor"])
    assert [r["request_id"] for r in later] == ["f-2", "f-3"]


def test_since_and_request_id_pick_entries(tmp_path: Path) -> None:
    """since keeps entries at or after a time; request_id picks one call's entry."""
    engine = _engine(tmp_path)
    audit = AuditLog(engine, KEY)
    for i in range(3):
        _call(audit, "f", i)
    store = InvocationLogStore(engine)
    assert len(store.recent("f", 10, since=0)) == 3
    assert store.recent("f", 10, since=4e9) == []
    (one,) = store.recent("f", 10, request_id="f-1")
    assert one["output"] == "line 1\n"
    assert store.recent("g", 10, request_id="f-1") == []


def test_trim_keeps_the_functions_newest_entries_in_batches(tmp_path: Path) -> None:
    """trim(f, keep) deletes f's oldest entries past its newest `keep`, at most `batch` a
    statement, and no other function's; trimming a function within its bound deletes none."""
    engine = _engine(tmp_path)
    audit = AuditLog(engine, KEY)
    for i in range(7):
        _call(audit, "f", i)
        _call(audit, "g", i)
    store = InvocationLogStore(engine)
    assert store.trim("f", 3, batch=2) == 2
    assert store.trim("f", 3, batch=2) == 2
    assert store.trim("f", 3, batch=2) == 0
    assert [r["output"] for r in store.recent("f", 10)] == ["line 4\n", "line 5\n", "line 6\n"]
    assert len(store.recent("g", 10)) == 7
    assert store.trim("g", 7) == 0
