"""Migrating a v1 data dir (made by the v1 code: tests/audit/data/v1) to log v2."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine

from donjon.audit import AuditError, AuditEvent, AuditLog, SigningKey, VerifierKey, verify_log
from donjon.audit.opening import open_audit_log
from donjon.config import Settings, load_settings
from donjon.store import connect, create_schema
from donjon.vault import MasterKey

V1 = Path(__file__).parent / "data" / "v1"
#: The fixture's records: `donjon init` of the v1 code (one), then 40 v1 appends.
V1_RECORDS = 41


def _v1_dir(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    shutil.copy(V1 / "donjon.db", data / "donjon.db")
    shutil.copy(V1 / "master.key.bin", data / "master.key")
    os.chmod(data / "master.key", 0o600)
    return load_settings({"DONJON_DATA_DIR": str(data)})


def _open(settings: Settings) -> tuple[Engine, AuditLog]:
    engine = connect(settings.database_url)
    create_schema(engine)
    return engine, open_audit_log(settings, engine, MasterKey.load(settings.master_key_path), None)


def test_v1_dir_is_migrated_and_verifies(tmp_path: Path) -> None:
    """A v1 data dir gets a signing key and a v2 log with the same records, then a record
    of the key and one of the migration (carrying the v1 head); it verifies under v2."""
    settings = _v1_dir(tmp_path)
    with sqlite3.connect(settings.db_path) as conn:
        before = conn.execute("SELECT seq, record FROM audit_log ORDER BY seq").fetchall()
        (v1_head,) = conn.execute("SELECT hash FROM audit_head").fetchone()
    engine, audit = _open(settings)
    audit.stop()
    key = VerifierKey.parse(settings.audit_signing_pub_path.read_text())
    assert SigningKey.load(settings.audit_signing_key_path).verifier == key
    result = verify_log(engine, key, checkpoint_file=settings.audit_checkpoints_path)
    assert result.ok, result
    assert result.records == V1_RECORDS + 2
    rows = audit.tail(2)
    assert rows[0]["action"] == "audit.signing_key.create"
    assert rows[0]["detail"]["verifier_key"] == str(key)
    assert rows[1]["action"] == "audit.migrate"
    assert rows[1]["detail"] == {
        "from": 1,
        "to": 2,
        "records": V1_RECORDS,
        "v1_head": bytes(v1_head).hex(),
    }
    with sqlite3.connect(settings.db_path) as conn:
        after = conn.execute(
            "SELECT seq, record FROM audit_log WHERE seq <= ? ORDER BY seq", (V1_RECORDS,)
        ).fetchall()
    assert after == before  # the records' bytes are unchanged
    engine.dispose()


def test_migration_happens_once(tmp_path: Path) -> None:
    """Opening the migrated dir again migrates nothing and makes no new key."""
    settings = _v1_dir(tmp_path)
    engine, audit = _open(settings)
    audit.stop()
    engine.dispose()
    pem = settings.audit_signing_key_path.read_bytes()
    engine, audit = _open(settings)
    audit.stop()
    assert settings.audit_signing_key_path.read_bytes() == pem
    assert [r["action"] for r in audit.tail(1)] == ["audit.migrate"]
    engine.dispose()


def test_tampered_v1_log_is_not_migrated(tmp_path: Path) -> None:
    """A v1 log that fails its v1 check is refused, clearly, and left as it was."""
    settings = _v1_dir(tmp_path)
    with sqlite3.connect(settings.db_path) as conn:
        conn.execute("UPDATE audit_log SET record = replace(record, 'r7', 'r8') WHERE seq = 9")
    engine = connect(settings.database_url)
    create_schema(engine)
    with pytest.raises(AuditError, match=r"v1 audit log does not verify.*record 9"):
        open_audit_log(settings, engine, MasterKey.load(settings.master_key_path), None)
    with sqlite3.connect(settings.db_path) as conn:
        (fmt,) = conn.execute("SELECT format FROM audit_head").fetchone()
    assert fmt is None
    engine.dispose()


def test_v2_log_without_its_key_is_refused(tmp_path: Path) -> None:
    """A v2 log whose signing key is gone is refused; no new key is made."""
    settings = _v1_dir(tmp_path)
    engine, audit = _open(settings)
    audit.stop()
    engine.dispose()
    settings.audit_signing_key_path.unlink()
    engine = connect(settings.database_url)
    with pytest.raises(AuditError, match=r"signing key .* is missing"):
        open_audit_log(settings, engine, MasterKey.load(settings.master_key_path), None)
    assert not settings.audit_signing_key_path.exists()
    engine.dispose()


def test_start_refuses_a_rolled_back_database(tmp_path: Path) -> None:
    """A database older than the checkpoint file's newest checkpoint is refused at start."""
    settings = _v1_dir(tmp_path)
    engine, audit = _open(settings)
    audit.stop()
    engine.dispose()
    shutil.copy(settings.db_path, tmp_path / "saved.db")
    engine, audit = _open(settings)
    for _ in range(3):
        audit.record_now(AuditEvent("key:a", "function.invoke", "f@1", "ok", {}))
    audit.stop()
    engine.dispose()
    shutil.copy(tmp_path / "saved.db", settings.db_path)
    engine = connect(settings.database_url)
    with pytest.raises(AuditError, match="rolled back"):
        open_audit_log(settings, engine, MasterKey.load(settings.master_key_path), None)
    engine.dispose()
