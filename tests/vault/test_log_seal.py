"""Invocation logs at rest: sealed per record, bound to their row, purged after retention."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from donjon.audit import AuditEvent, AuditLog
from donjon.audit.log import InvocationLog
from donjon.config import ConfigError, load_settings
from donjon.secret import Secret
from donjon.store import Engine, InvocationLogStore, connect, create_schema
from donjon.store.tables import invocation_logs
from donjon.vault import MasterKey
from donjon.vault.logseal import LogSealer

MAC = Secret(b"k" * 32)
DISTINCTIVE = "zq-distinctive-printed-7731"


def _setup(tmp_path: Path) -> tuple[Engine, AuditLog, InvocationLogStore, Path]:
    db = tmp_path / "donjon.db"
    engine = connect(f"sqlite:///{db}")
    create_schema(engine)
    sealer = LogSealer(MasterKey.create(tmp_path / "master.key"))
    return engine, AuditLog(engine, MAC, sealer), InvocationLogStore(engine, sealer), db


def _call(audit: AuditLog, function: str, rid: str, output: str) -> None:
    audit.record_now(
        AuditEvent("key:a", "function.invoke", f"{function}@1", "ok"),
        InvocationLog(function, 1, rid, "ok", output),
    )


def test_database_file_holds_no_plaintext_of_a_logged_string(tmp_path: Path) -> None:
    """After a call, no byte sequence of what it printed is in the SQLite files."""
    engine, audit, logs, db = _setup(tmp_path)
    _call(audit, "f", "r1", f"hello {DISTINCTIVE}\n")
    assert logs.recent("f", 5)[0]["output"] == f"hello {DISTINCTIVE}\n"
    engine.dispose()  # checkpoints the WAL into the main file
    for path in tmp_path.glob("donjon.db*"):
        assert DISTINCTIVE.encode() not in path.read_bytes(), path
    assert db.exists()


def test_a_ciphertext_moved_to_another_row_fails(tmp_path: Path) -> None:
    """Copying one record's sealed output and key into another row does not decrypt: that
    entry says so, the others are read."""
    engine, audit, logs, _ = _setup(tmp_path)
    _call(audit, "f", "r1", "first\n")
    _call(audit, "f", "r2", "second\n")
    with engine.begin() as conn:
        src = conn.execute(
            select(invocation_logs).where(invocation_logs.c.request_id == "r1")
        ).one()
        conn.execute(
            update(invocation_logs)
            .where(invocation_logs.c.request_id == "r2")
            .values(sealed=src.sealed, wrapped_key=src.wrapped_key)
        )
    first, moved = logs.recent("f", 5)
    assert first["output"] == "first\n" and "first" not in moved["output"]
    assert moved["output"].startswith("[donjon] this call's log does not open: ")
    assert "does not decrypt" in moved["output"]


def test_plaintext_rows_from_before_sealing_stay_readable(tmp_path: Path) -> None:
    """A row an older version wrote (plaintext output, nothing sealed) reads as it was."""
    engine, audit, logs, _ = _setup(tmp_path)
    with engine.begin() as conn:
        conn.execute(
            insert(invocation_logs).values(
                function="f",
                version=1,
                request_id="old",
                ts=time.time(),
                outcome="ok",
                output="legacy\n",
            )
        )
    _call(audit, "f", "new", "sealed\n")
    assert [r["output"] for r in logs.recent("f", 5)] == ["legacy\n", "sealed\n"]


def test_retention_purges_old_rows_in_bounded_batches(tmp_path: Path) -> None:
    """Rows older than the cut-off go, at most `batch` per call; newer ones stay."""
    engine, audit, logs, _ = _setup(tmp_path)
    for i in range(5):
        _call(audit, "f", f"old{i}", "x\n")
    _call(audit, "f", "fresh", "y\n")
    long_ago = time.time() - 40 * 86400
    with engine.begin() as conn:
        conn.execute(
            update(invocation_logs)
            .where(invocation_logs.c.request_id.like("old%"))
            .values(ts=long_ago)
        )
    cutoff = time.time() - 30 * 86400
    assert logs.purge(cutoff, batch=3) == 3
    assert logs.purge(cutoff, batch=3) == 2
    assert logs.purge(cutoff, batch=3) == 0
    assert [r["request_id"] for r in logs.recent("f", 10)] == ["fresh"]


def test_log_retention_setting() -> None:
    """DONJON_LOG_RETENTION_DAYS defaults to 30; a bad value is a clear error."""
    assert load_settings({"DONJON_DATA_DIR": "/tmp/donjon-config-test"}).log_retention_days == 30
    assert (
        load_settings(
            {"DONJON_DATA_DIR": "/tmp/donjon-config-test", "DONJON_LOG_RETENTION_DAYS": "7"}
        ).log_retention_days
        == 7
    )
    for bad in ("0", "-3", "abc", "1.5"):
        with pytest.raises(ConfigError, match="DONJON_LOG_RETENTION_DAYS"):
            load_settings(
                {"DONJON_DATA_DIR": "/tmp/donjon-config-test", "DONJON_LOG_RETENTION_DAYS": bad}
            )
