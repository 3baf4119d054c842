"""Unused grants from the audit log: the grant_uses index the writer keeps, and the query."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, inspect

from donjon.audit import AuditEvent, AuditLog, verify_log
from donjon.audit.unused import MAX_DAYS, BadWindow, check_days, unused_grants
from donjon.secret import Secret
from donjon.store import connect, create_schema
from donjon.store.tables import metadata

KEY = Secret(b"k" * 32)
GRANTS = {
    "secrets": ("stripe-key", "db-password"),
    "egress": ("api.stripe.com:443",),
    "invoke": ("thumbnail", "resize"),
}
DAY = 86400.0


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = connect(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(e)
    return e


def _call(log: AuditLog, target: str, actor: str = "key:a", **detail: Any) -> None:
    log.record_now(
        AuditEvent(actor, "function.invoke", target, "ok", {"request_id": "r", **detail})
    )


def _report(engine: Engine, days: int = 90, now: float | None = None) -> dict[str, Any]:
    return unused_grants(engine, "billing", 3, GRANTS, days, now).as_json()


def test_nothing_used_lists_every_grant(engine: Engine) -> None:
    """With no record of any use, every grant is unused, egress included, with no note."""
    AuditLog(engine, KEY)
    report = _report(engine)
    assert report["unused"] == {
        "secrets": ["stripe-key", "db-password"],
        "egress": ["api.stripe.com:443"],
        "invoke": ["thumbnail", "resize"],
    }
    assert report["used"] == [] and report["notes"] == []
    assert report["function"] == "billing" and report["version"] == 3 and report["days"] == 90


def test_a_secret_read_in_a_call_is_used(engine: Engine) -> None:
    """A call record of the function naming secrets_read marks that secret used, no other."""
    log = AuditLog(engine, KEY)
    _call(log, "billing@2", secrets_read=["stripe-key"], trigger="invoke")
    _call(log, "other@1", secrets_read=["db-password"], trigger="invoke")  # another function
    report = _report(engine)
    assert report["unused"]["secrets"] == ["db-password"]
    [used] = report["used"]
    assert used["kind"] == "secret" and used["name"] == "stripe-key" and used["record"] == 1


def test_a_function_invoke_by_the_function_uses_its_invoke_grant(engine: Engine) -> None:
    """actor function:NAME, action function.invoke, trigger function: that callee is used."""
    log = AuditLog(engine, KEY)
    _call(log, "thumbnail@4", actor="function:billing", trigger="function")
    # Not uses of billing's invoke grants: another trigger, another caller, another action.
    _call(log, "resize@1", actor="function:billing", trigger="invoke")
    _call(log, "resize@1", actor="function:other", trigger="function")
    log.record_now(AuditEvent("function:billing", "function.throttle", "resize@1", "denied", {}))
    report = _report(engine)
    assert report["unused"]["invoke"] == ["resize"]
    assert [(u["kind"], u["name"]) for u in report["used"]] == [("invoke", "thumbnail")]


def _egress(log: AuditLog, target: str, decision: str, grant: str) -> None:
    log.record_now(
        AuditEvent(
            f"function:{target.partition('@')[0]}",
            "egress.connect",
            target,
            decision,
            {"request_id": "r", "decision": decision, "grant": grant, "count": 1},
        )
    )


def test_an_allowed_egress_connection_uses_its_grant(engine: Engine) -> None:
    """An egress.connect record the proxy allowed under a grant marks that egress grant used."""
    log = AuditLog(engine, KEY)
    _egress(log, "billing@3", "allowed", "api.stripe.com:443")
    report = _report(engine)
    assert report["unused"]["egress"] == []
    [used] = report["used"]
    assert used["kind"] == "egress" and used["name"] == "api.stripe.com:443"
    assert used["record"] == 1 and report["notes"] == []


def test_a_refused_egress_connection_uses_nothing(engine: Engine) -> None:
    """Refused connections, and other functions' allowed ones, leave the egress grant unused."""
    log = AuditLog(engine, KEY)
    _egress(log, "billing@3", "denied", "api.stripe.com:443")
    _egress(log, "other@1", "allowed", "api.stripe.com:443")
    assert _report(engine)["unused"]["egress"] == ["api.stripe.com:443"]


def test_the_newest_use_is_kept(engine: Engine) -> None:
    """Several uses of one grant: the index points at the newest record."""
    log = AuditLog(engine, KEY)
    for _ in range(3):
        _call(log, "billing@1", secrets_read=["stripe-key"])
    [used] = _report(engine)["used"]
    assert used["record"] == 3


def test_a_use_before_the_window_is_unused(engine: Engine) -> None:
    """A use older than now - N days does not count; a wider window sees it."""
    log = AuditLog(engine, KEY)
    _call(log, "billing@1", secrets_read=["stripe-key"])
    later = time.time() + 10 * DAY
    assert "stripe-key" in _report(engine, days=5, now=later)["unused"]["secrets"]
    assert "stripe-key" not in _report(engine, days=11, now=later)["unused"]["secrets"]


def test_an_index_row_the_log_does_not_back_counts_for_nothing(engine: Engine) -> None:
    """A grant_uses row naming a record that shows no such use is ignored, with a note."""
    log = AuditLog(engine, KEY)
    _call(log, "billing@1")  # record 1: no secret read
    db = engine.url.database
    assert db is not None
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO grant_uses VALUES ('billing', 'secret', 'stripe-key', 1, ?)",
            (time.time(),),
        )
    report = _report(engine)
    assert "stripe-key" in report["unused"]["secrets"] and report["used"] == []
    assert any("audit record 1" in n for n in report["notes"])


def test_the_index_leaves_the_chain_intact(engine: Engine) -> None:
    """Records that carry uses are ordinary records: the log verifies."""
    log = AuditLog(engine, KEY)
    _call(log, "billing@1", secrets_read=["stripe-key", "db-password"])
    _call(log, "thumbnail@1", actor="function:billing", trigger="function")
    assert verify_log(engine, KEY).ok


def test_malformed_uses_are_not_indexed(engine: Engine) -> None:
    """Names that are not names and non-list secrets_read index nothing and break nothing."""
    log = AuditLog(engine, KEY)
    _call(log, "billing@1", secrets_read="stripe-key")
    _call(log, "billing@1", secrets_read=["../x", "A", 3, "n" * 64])
    _call(log, "not a name@1", secrets_read=["stripe-key"])
    _call(log, "thumbnail@1", actor="function:", trigger="function")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM grant_uses").scalar() == 0
    assert verify_log(engine, KEY).ok


@pytest.mark.parametrize("bad", [0, -1, MAX_DAYS + 1, 10**12, "0", "-3", "9" * 40, "7d", "", True])
def test_bad_windows_are_refused(bad: object) -> None:
    """Zero, negative, huge and non-numeric windows are a clear error with a hint."""
    with pytest.raises(BadWindow) as refused:
        check_days(bad)
    assert "1 to 3650" in refused.value.message and refused.value.hint


def test_an_older_data_dir_gains_the_index(tmp_path: Path) -> None:
    """A database made before grant_uses existed gets the table at the next start."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = create_engine(url)
    metadata.create_all(old, tables=[t for t in metadata.sorted_tables if t.name != "grant_uses"])
    assert "grant_uses" not in inspect(old).get_table_names()
    engine = connect(url)
    create_schema(engine)
    assert "grant_uses" in inspect(engine).get_table_names()
    log = AuditLog(engine, KEY)
    _call(log, "billing@1", secrets_read=["stripe-key"])
    assert _report(engine)["unused"]["secrets"] == ["db-password"]
