"""The audit log (v2, a Merkle tree): appends, and detection of every kind of tampering."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from donjon.audit import AuditEvent, AuditLog, verify_log
from donjon.audit.log import CommittedBatch
from donjon.secret import Secret
from donjon.store import connect, create_schema

KEY = Secret(b"k" * 32)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = connect(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(e)
    return e


def _fill(engine: Engine, n: int) -> AuditLog:
    log = AuditLog(engine, KEY)
    for i in range(n):
        log.record_now(AuditEvent("key:a", "function.invoke", f"f{i}", "ok", {"i": i}))
    return log


def _sql(engine: Engine, statement: str, *args: object) -> None:
    db = engine.url.database
    assert db is not None
    with sqlite3.connect(db) as conn:
        conn.execute(statement, args)


def test_intact_log_verifies(engine: Engine) -> None:
    """An untouched log verifies, counting every record."""
    _fill(engine, 10)
    result = verify_log(engine, KEY)
    assert result.ok and result.records == 10


def test_empty_log_verifies(engine: Engine) -> None:
    """A log with no records is intact."""
    assert verify_log(engine, KEY).ok


def test_edit_is_detected(engine: Engine) -> None:
    """Changing one record's bytes is caught at that record."""
    _fill(engine, 10)
    _sql(engine, "UPDATE audit_log SET record = replace(record, 'ok', 'no') WHERE seq = 4")
    result = verify_log(engine, KEY)
    assert not result.ok and result.bad_seq == 4


def test_delete_is_detected(engine: Engine) -> None:
    """Deleting a record in the middle is caught at the gap."""
    _fill(engine, 10)
    _sql(engine, "DELETE FROM audit_log WHERE seq = 6")
    result = verify_log(engine, KEY)
    assert not result.ok and result.bad_seq == 6


def test_reorder_is_detected(engine: Engine) -> None:
    """Swapping two records is caught."""
    _fill(engine, 10)
    _sql(engine, "UPDATE audit_log SET seq = -1 WHERE seq = 3")
    _sql(engine, "UPDATE audit_log SET seq = 3 WHERE seq = 5")
    _sql(engine, "UPDATE audit_log SET seq = 5 WHERE seq = -1")
    result = verify_log(engine, KEY)
    assert not result.ok and result.bad_seq == 3
    assert "reordered" in result.reason


def test_truncation_is_detected(engine: Engine) -> None:
    """Removing the newest records is caught by the signed head."""
    _fill(engine, 10)
    _sql(engine, "DELETE FROM audit_log WHERE seq > 7")
    result = verify_log(engine, KEY)
    assert not result.ok and result.bad_seq == 8
    assert "truncated" in result.reason


def test_forged_head_is_detected(engine: Engine) -> None:
    """Truncating and moving the head back without the key is caught."""
    _fill(engine, 10)
    _sql(engine, "DELETE FROM audit_log WHERE seq > 7")
    _sql(engine, "UPDATE audit_head SET seq = 7, hash = (SELECT hash FROM audit_log WHERE seq = 7)")
    result = verify_log(engine, KEY)
    assert not result.ok and "signature" in result.reason


def test_recomputed_leaf_hashes_are_detected(engine: Engine) -> None:
    """Rewriting a record together with its leaf hash still fails at the signed head."""
    from donjon.audit import leaf_hash

    _fill(engine, 5)
    db = engine.url.database
    assert db is not None
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT record FROM audit_log WHERE seq = 2").fetchone()
        record = bytes(stored).replace(b'"ok"', b'"no"')
        conn.execute(
            "UPDATE audit_log SET record = ?, hash = ? WHERE seq = 2", (record, leaf_hash(record))
        )
    result = verify_log(engine, KEY)
    assert not result.ok
    assert result.bad_range is not None and result.bad_range[0] <= 2 <= result.bad_range[1]


def test_appended_records_after_head_are_detected(engine: Engine) -> None:
    """A record inserted after the head by someone else is caught."""
    from donjon.audit import leaf_hash

    log = _fill(engine, 3)
    record = log._encode(4, 1.0, AuditEvent("evil", "x", "y", "ok"))
    _sql(
        engine,
        "INSERT INTO audit_log (seq, record, hash) VALUES (4, ?, ?)",
        record,
        leaf_hash(record),
    )
    del log
    result = verify_log(engine, KEY)
    assert not result.ok and result.bad_seq == 4


def test_writer_with_another_key_is_refused(engine: Engine) -> None:
    """A writer whose key did not sign the head refuses to append to the log."""
    from donjon.audit import AuditError

    _fill(engine, 3)
    with pytest.raises(AuditError, match="not signed by this node"):
        AuditLog(engine, Secret(b"x" * 32))


def test_group_commit_appends_every_waiter(engine: Engine) -> None:
    """Concurrent awaited appends are all durable and chained in order."""
    log = AuditLog(engine, KEY)
    log.start()

    async def many() -> None:
        await asyncio.gather(
            *(log.record(AuditEvent("a", "function.invoke", str(i), "ok")) for i in range(500))
        )

    try:
        asyncio.run(many())
    finally:
        log.stop()
    result = verify_log(engine, KEY)
    assert result.ok and result.records == 500


def test_records_hold_no_payload_fields(engine: Engine) -> None:
    """A record is metadata only: the fields it has are fixed."""
    _fill(engine, 1)
    db = engine.url.database
    assert db is not None
    with sqlite3.connect(db) as conn:
        (record,) = conn.execute("SELECT record FROM audit_log").fetchone()
    import json

    assert set(json.loads(record)) == {
        "seq",
        "ts",
        "actor",
        "action",
        "target",
        "outcome",
        "detail",
    }


@pytest.mark.parametrize(
    "event",
    [
        AuditEvent("key:a", "function.invoke", "f@1", "ok", {"b": 1, "a": [1.5, None, 'é\n"']}),
        AuditEvent("anonymous", "auth.denied", '/fn/\u2603?x="1"', "denied", {}),
    ],
)
def test_record_bytes_are_canonical_json(engine: Engine, event: AuditEvent) -> None:
    """A record's stored bytes are exactly its canonical JSON (sorted keys, no spaces)."""
    import json

    log = AuditLog(engine, KEY)
    encoded = log._encode(7, 1234.5678, event)
    body = {
        "seq": 7,
        "ts": 1234.5678,
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "detail": dict(event.detail),
    }
    assert encoded == json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def test_verify_sees_one_instant_while_records_are_appended(engine: Engine) -> None:
    """A record appended between verify's reads of the head and of the records is not a
    false alarm: both are read in one snapshot."""
    _fill(engine, 5)
    assert engine.url.database is not None
    writer = AuditLog(connect(f"sqlite:///{engine.url.database}"), KEY)  # another process, say
    real = engine.raw_connection

    class AppendAfterHead:
        """A DBAPI connection whose first query is followed by another writer's append."""

        def __init__(self) -> None:
            self._conn = real()
            self._done = False

        def cursor(self) -> object:
            cur = self._conn.cursor()
            outer = self

            class Cursor:
                def __getattr__(self, name: str) -> object:
                    return getattr(cur, name)

                def execute(self, sql: str, *params: Sequence[Any] | Mapping[str, Any]) -> object:
                    result = cur.execute(sql, *params)
                    if "audit_head" in sql and not outer._done:
                        outer._done = True
                        writer.record_now(AuditEvent("key:b", "function.invoke", "g", "ok"))
                    return result

            return Cursor()

        def __getattr__(self, name: str) -> object:
            return getattr(self._conn, name)

    with pytest.MonkeyPatch.context() as patch:  # undone on leaving, as try/finally would
        patch.setattr(engine, "raw_connection", AppendAfterHead)
        result = verify_log(engine, KEY)
    assert result.ok, result
    assert result.records == 5
    assert verify_log(engine, KEY).records == 6


def test_listeners_see_every_committed_record_once_in_order(engine: Engine) -> None:
    """Each listener gets every committed record once, with its seq, after the commit."""
    log = _fill(engine, 2)
    seen: list[tuple[int, str]] = []
    batches: list[int] = []

    def listen(batch: CommittedBatch) -> None:
        batches.append(len(batch.records))
        seen.extend((r.seq, r.event.target) for r in batch.records)
        assert batch.write_seconds >= 0

    def broken(batch: CommittedBatch) -> None:
        raise RuntimeError("a listener's bug")

    log.add_listener(broken)
    log.add_listener(listen)
    log.start()

    async def many() -> None:
        await asyncio.gather(
            *(log.record(AuditEvent("a", "function.invoke", str(i), "ok")) for i in range(200))
        )

    try:
        asyncio.run(many())
    finally:
        log.stop()
    assert [seq for seq, _ in seen] == list(range(3, 203))
    assert sorted(int(t) for _, t in seen) == list(range(200))
    assert sum(batches) == 200
    assert verify_log(engine, KEY).ok
