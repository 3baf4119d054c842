"""The v2 writer: leaf hashes, the signed head, checkpoints by cadence (fake clock)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from donjon.audit import (
    AuditError,
    AuditEvent,
    AuditLog,
    Checkpoint,
    SigningKey,
    leaf_hash,
    open_checkpoint,
    verify_log,
)
from donjon.audit.merkle import EMPTY_ROOT, root
from donjon.audit.tree import sign_head
from donjon.config import AuditSettings
from donjon.store import connect, create_schema

EVENT = AuditEvent("key:a", "function.invoke", "f@1", "ok", {"request_id": "r"})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = connect(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(e)
    return e


def _rows(engine: Engine, query: str) -> list[tuple[Any, ...]]:
    assert engine.url.database is not None
    with sqlite3.connect(engine.url.database) as conn:
        return conn.execute(query).fetchall()


def test_rows_hold_leaf_hashes_and_the_head_is_signed(engine: Engine) -> None:
    """Each row's hash is its record's leaf hash; the head holds the tree's size and root,
    signed over the checkpoint body."""
    key = SigningKey.generate()
    log = AuditLog(engine, key)
    for _ in range(7):
        log.record_now(EVENT)
    rows = _rows(engine, "SELECT record, hash FROM audit_log ORDER BY seq")
    assert all(bytes(h) == leaf_hash(bytes(r)) for r, h in rows)
    ((size, head_root, signature, fmt, ts_ms),) = _rows(
        engine, "SELECT seq, hash, mac, format, ts_ms FROM audit_head"
    )
    assert size == 7 and fmt == 2
    assert head_root == root([bytes(h) for _, h in rows])
    body = Checkpoint(key.origin, 7, bytes(head_root), int(ts_ms)).body()
    assert key.verifier.verify(body, bytes(signature))
    # The writer binds the root and the signature as bytearrays: stored as the BLOBs
    # sign_head makes (Ed25519 is deterministic), as the records' bytes and leaf hashes.
    assert signature == sign_head(key, 7, head_root, int(ts_ms)).signature
    types = "SELECT typeof(hash), typeof(mac) FROM audit_head"
    assert _rows(engine, types) == [("blob", "blob")]
    assert set(_rows(engine, "SELECT typeof(record), typeof(hash) FROM audit_log")) == {
        ("blob", "blob")
    }


def test_new_log_has_a_signed_empty_head(engine: Engine) -> None:
    """A log with no records has a signed head of size 0 and root SHA-256("")."""
    AuditLog(engine, SigningKey.generate())
    ((size, head_root),) = _rows(engine, "SELECT seq, hash FROM audit_head")
    assert size == 0 and bytes(head_root) == EMPTY_ROOT


def test_checkpoint_cadence_on_a_fake_clock(engine: Engine, tmp_path: Path) -> None:
    """Checkpoints come every N records, after T seconds with new records (not without),
    at start and at stop; each is in the table and the file, signed."""
    clock = FakeClock()
    key = SigningKey.generate()
    file = tmp_path / "cp.jsonl"
    settings = AuditSettings(checkpoint_records=5, checkpoint_s=30)
    log = AuditLog(engine, key, settings=settings, checkpoint_file=file, clock=clock)
    log.start()  # the start checkpoint: size 0
    log.stop()
    log = AuditLog(engine, key, settings=settings, checkpoint_file=file, clock=clock)
    for _ in range(4):
        log.record_now(EVENT)
    assert log.checkpoint(force=False) is None  # 4 new records, no time passed
    log.record_now(EVENT)  # the 5th: due by count
    clock.now += 10
    log.record_now(EVENT)
    assert log.checkpoint(force=False) is None
    clock.now += 25  # 35 s since the checkpoint at 5, with a new record: due by time
    entry = log.checkpoint(force=False)
    assert entry is not None and entry.size == 6
    clock.now += 100
    assert log.checkpoint(force=False) is None  # time passed, but no new record
    log.record_now(EVENT)
    log.stop()  # the stop checkpoint: 7
    sizes = [s for (s,) in _rows(engine, "SELECT size FROM audit_checkpoints ORDER BY size")]
    assert sizes == [0, 5, 6, 7]
    lines = [json.loads(line) for line in file.read_text().splitlines()]
    assert [line["size"] for line in lines] == sizes
    for line in lines:
        checkpoint = open_checkpoint(line["note"], key.verifier)
        assert checkpoint.size == line["size"] and checkpoint.root.hex() == line["root"]
    assert checkpoint.timestamp_ms == int(clock.now * 1000)
    assert verify_log(engine, key, checkpoint_file=file).ok


def test_writer_thread_makes_the_time_checkpoint(engine: Engine, tmp_path: Path) -> None:
    """The writer thread wakes by itself for a checkpoint due by time."""
    file = tmp_path / "cp.jsonl"
    key = SigningKey.generate()
    log = AuditLog(engine, key, settings=AuditSettings(checkpoint_s=0.2), checkpoint_file=file)
    log.start()

    async def append() -> None:
        await log.record(EVENT)
        for _ in range(600):  # bounded: up to a minute on a loaded machine
            if len(file.read_text().splitlines()) >= 2:
                return
            await asyncio.sleep(0.1)

    try:
        asyncio.run(append())
        sizes = [json.loads(line)["size"] for line in file.read_text().splitlines()]
        assert sizes[:2] == [0, 1]
    finally:
        log.stop()


def test_group_commit_with_checkpoints_verifies(engine: Engine, tmp_path: Path) -> None:
    """Concurrent appends through the writer thread, checkpointed at batch ends, verify."""
    file = tmp_path / "cp.jsonl"
    key = SigningKey.generate()
    log = AuditLog(engine, key, settings=AuditSettings(checkpoint_records=50), checkpoint_file=file)
    log.start()

    async def many() -> None:
        await asyncio.gather(*(log.record(EVENT) for _ in range(400)))

    try:
        asyncio.run(many())
    finally:
        log.stop()
    result = verify_log(engine, key, checkpoint_file=file)
    assert result.ok and result.records == 400 and result.checkpoints >= 2  # batches end them


def test_start_refuses_a_log_that_does_not_end_at_its_head(engine: Engine) -> None:
    """A writer will not extend a log whose leaves do not reach its signed head."""
    key = SigningKey.generate()
    log = AuditLog(engine, key)
    for _ in range(5):
        log.record_now(EVENT)
    assert engine.url.database is not None
    with sqlite3.connect(engine.url.database) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = 5")
    with pytest.raises(AuditError, match="does not end at its signed head"):
        AuditLog(engine, key)
    with sqlite3.connect(engine.url.database) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = 3")
    with pytest.raises(AuditError, match="record 3 is missing"):
        AuditLog(engine, key)


def test_failed_commit_leaves_the_tree_unchanged(engine: Engine) -> None:
    """An append whose transaction fails moves neither the frontier nor the head."""
    key = SigningKey.generate()
    log = AuditLog(engine, key)
    log.record_now(EVENT)
    assert engine.url.database is not None
    with sqlite3.connect(engine.url.database) as conn:  # the next seq is taken: the insert fails
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'no'); END"
        )
    with pytest.raises(Exception, match="no"):
        log.record_now(EVENT)
    assert log.size == 1
    with sqlite3.connect(engine.url.database) as conn:
        conn.execute("DROP TRIGGER boom")
    log.record_now(EVENT)
    assert verify_log(engine, key).ok and log.size == 2


def test_a_detail_with_its_own_seq_key_verifies(engine: Engine) -> None:
    """A record whose detail (or target) holds "seq" keys and quotes is read at its own
    top-level seq."""
    key = SigningKey.generate()
    log = AuditLog(engine, key)
    log.record_now(AuditEvent("a", "x", 'y","seq":9,"', "ok", {"seq": 99, "z": {"seq": 7}}))
    log.record_now(EVENT)
    assert verify_log(engine, key).ok
