"""verify_log v2 on a real SQLite file and checkpoint file: every form of tampering."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from donjon.audit import AuditEvent, AuditLog, SigningKey, leaf_hash, verify_log, verify_split
from donjon.audit.verify import VerifyResult
from donjon.config import AuditSettings
from donjon.store import connect, create_schema

#: A checkpoint every 10 records: 35 records give checkpoints at 1 (the first write),
#: 11, 21, 31 and, at stop, 35.
CADENCE = AuditSettings(checkpoint_records=10, checkpoint_s=3600)


@dataclass
class Log:
    dir: Path
    engine: Engine
    key: SigningKey
    #: Processes verify reads the records in (`processes` fixture).
    processes: int = 1

    @property
    def db(self) -> Path:
        return self.dir / "a.db"

    @property
    def file(self) -> Path:
        return self.dir / "audit-checkpoints.jsonl"

    @property
    def state(self) -> Path:
        return self.dir / "audit-verified.json"

    def open(self) -> AuditLog:
        return AuditLog(self.engine, self.key, settings=CADENCE, checkpoint_file=self.file)

    def fill(self, n: int) -> None:
        log = self.open()
        for i in range(n):
            log.record_now(AuditEvent("key:a", "function.invoke", f"f{i}", "ok", {"i": i}))
        log.stop()

    def verify(self, *, incremental: bool = False) -> VerifyResult:
        return verify_log(
            self.engine,
            self.key.verifier,
            checkpoint_file=self.file,
            state_file=self.state,
            incremental=incremental,
            processes=self.processes,
        )

    def sql(self, statement: str, *args: object) -> None:
        with sqlite3.connect(self.db) as conn:
            conn.execute(statement, args)


@pytest.fixture(params=["one process", "split"])
def processes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Every case twice: read by one process, and split in blocks of 4 records over three
    (verify_split.py), which must report every kind of tampering the same way."""
    if request.param == "one process":
        return 1
    monkeypatch.setattr(verify_split, "BLOCK_BITS", 2)
    monkeypatch.setattr(verify_split, "MIN_RECORDS", 0)
    return 3


@pytest.fixture
def log(tmp_path: Path, processes: int) -> Iterator[Log]:
    engine = connect(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(engine)
    made = Log(tmp_path, engine, SigningKey.generate(), processes)
    made.fill(35)
    yield made
    engine.dispose()


def test_intact_log_verifies_every_checkpoint(log: Log) -> None:
    """An untouched log verifies: all records, and each checkpoint in table and file."""
    result = log.verify()
    assert result.ok, result
    assert result.records == 35
    assert result.checkpoints == 10  # sizes 1, 11, 21, 31, 35, in the table and in the file
    assert result.warnings == ()


def test_edited_record_is_named(log: Log) -> None:
    """A record whose bytes changed is named."""
    log.sql("UPDATE audit_log SET record = replace(record, '\"ok\"', '\"no\"') WHERE seq = 17")
    result = log.verify()
    assert not result.ok and result.bad_seq == 17 and "edited" in result.reason


def test_deleted_record_is_named(log: Log) -> None:
    """A record deleted from the middle is named."""
    log.sql("DELETE FROM audit_log WHERE seq = 12")
    result = log.verify()
    assert not result.ok and result.bad_seq == 12 and "missing" in result.reason


def test_inserted_record_is_named(log: Log) -> None:
    """A record inserted in the middle (later seqs moved up) is named where it went in."""
    with sqlite3.connect(log.db) as conn:
        conn.execute("UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 20")
        conn.execute("UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000")
        record = (
            b'{"action":"x","actor":"evil","detail":{},"outcome":"ok","seq":20,'
            b'"target":"y","ts":1.0}'
        )
        conn.execute(
            "INSERT INTO audit_log (seq, record, hash) VALUES (20, ?, ?)",
            (record, leaf_hash(record)),
        )
    result = log.verify()
    # The forged record 20 names its own seq and matches its leaf hash; the old 20, now
    # at 21, claims seq 20 too: the insertion is named where it went in.
    assert not result.ok and result.bad_seq == 20 and "inserted at 20" in result.reason


def test_reordered_records_are_named(log: Log) -> None:
    """Two rows swapped with their leaf hashes are named at the first."""
    log.sql("UPDATE audit_log SET seq = -1 WHERE seq = 3")
    log.sql("UPDATE audit_log SET seq = 3 WHERE seq = 5")
    log.sql("UPDATE audit_log SET seq = 5 WHERE seq = -1")
    result = log.verify()
    assert not result.ok and result.bad_seq == 3 and "reordered" in result.reason


def test_a_record_after_the_signed_head_is_named(log: Log) -> None:
    """A row appended after the head, whole (its seq, its leaf hash): not written by Donjon."""
    record = (
        b'{"action":"x","actor":"evil","detail":{},"outcome":"ok","seq":36,"target":"y","ts":1.0}'
    )
    log.sql(
        "INSERT INTO audit_log (seq, record, hash) VALUES (36, ?, ?)", record, leaf_hash(record)
    )
    result = log.verify()
    assert not result.ok and result.bad_seq == 36 and "not written by Donjon" in result.reason


def test_a_record_before_seq_1_is_named(log: Log) -> None:
    """A row slid in below the first (seq 0, its own leaf hash): the records read start at
    1, so it is looked for apart."""
    record = (
        b'{"action":"x","actor":"evil","detail":{},"outcome":"ok","seq":0,"target":"y","ts":1.0}'
    )
    log.sql("INSERT INTO audit_log (seq, record, hash) VALUES (0, ?, ?)", record, leaf_hash(record))
    result = log.verify()
    assert not result.ok and result.bad_seq == 0 and "before seq 1" in result.reason


def test_truncated_tail_is_named(log: Log) -> None:
    """Deleting the newest records is caught by the signed head, at the first gone."""
    log.sql("DELETE FROM audit_log WHERE seq > 28")
    result = log.verify()
    assert not result.ok and result.bad_seq == 29 and "truncated" in result.reason


def test_records_rewritten_with_leaf_hashes_give_the_range(log: Log) -> None:
    """A record rewritten together with its leaf hash: the range between the last good and
    the first bad checkpoint is named, honestly as a range."""
    with sqlite3.connect(log.db) as conn:
        (stored,) = conn.execute("SELECT record FROM audit_log WHERE seq = 15").fetchone()
        record = bytes(stored).replace(b'"ok"', b'"no"')
        conn.execute(
            "UPDATE audit_log SET record = ?, hash = ? WHERE seq = 15", (record, leaf_hash(record))
        )
    result = log.verify()
    assert not result.ok
    assert result.bad_seq is None and result.bad_range == (12, 21)
    assert "cannot say which" in result.reason


def test_rewrite_after_the_last_checkpoint_is_caught_by_the_head(
    tmp_path: Path, processes: int
) -> None:
    """Records rewritten with their hashes after the newest checkpoint fail at the head."""
    engine = connect(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(engine)
    made = Log(tmp_path, engine, SigningKey.generate(), processes)
    writer = made.open()
    for i in range(15):
        writer.record_now(AuditEvent("key:a", "function.invoke", f"f{i}", "ok", {"i": i}))
    # No stop(): the newest checkpoint is at 11; the head is at 15.
    with sqlite3.connect(made.db) as conn:
        (stored,) = conn.execute("SELECT record FROM audit_log WHERE seq = 13").fetchone()
        record = bytes(stored).replace(b'"ok"', b'"no"')
        conn.execute(
            "UPDATE audit_log SET record = ?, hash = ? WHERE seq = 13", (record, leaf_hash(record))
        )
    result = made.verify()
    assert not result.ok and result.bad_range == (12, 15) and "signed head" in result.reason
    engine.dispose()


def test_edited_checkpoint_row_is_caught(log: Log) -> None:
    """A checkpoint row whose root was changed no longer matches its signed note."""
    log.sql("UPDATE audit_checkpoints SET root = zeroblob(32) WHERE size = 21")
    result = log.verify()
    assert not result.ok and "checkpoint row of size 21" in result.reason


def test_forged_checkpoint_note_is_caught(log: Log) -> None:
    """A checkpoint note whose root was changed fails its signature."""
    with sqlite3.connect(log.db) as conn:
        (note,) = conn.execute("SELECT note FROM audit_checkpoints WHERE size = 21").fetchone()
        root_line = note.split("\n")[2]
        forged = note.replace(root_line, "A" * 43 + "=")
        conn.execute("UPDATE audit_checkpoints SET note = ? WHERE size = 21", (forged,))
    result = log.verify()
    assert not result.ok and "not a checkpoint signed by this log's key" in result.reason


def test_edited_checkpoint_file_is_caught(log: Log) -> None:
    """A line of the checkpoint file whose size was changed is caught."""
    lines = log.file.read_text().splitlines()
    entry = json.loads(lines[2])
    entry["size"] = 20
    lines[2] = json.dumps(entry)
    log.file.write_text("\n".join(lines) + "\n")
    result = log.verify()
    assert not result.ok and "line 3 of audit-checkpoints.jsonl was edited" in result.reason


def test_rollback_to_an_earlier_copy_is_caught(log: Log, tmp_path: Path) -> None:
    """The database replaced by a copy taken earlier, with the checkpoint file kept, is
    caught: the file holds checkpoints beyond the database."""
    log.engine.dispose()
    saved = tmp_path / "saved.db"
    shutil.copy(log.db, saved)
    log.fill(12)  # the node goes on: checkpoints at 45, 47 reach the file
    log.engine.dispose()
    shutil.copy(saved, log.db)
    for extra in ("-wal", "-shm"):
        (tmp_path / f"a.db{extra}").unlink(missing_ok=True)
    result = log.verify()
    assert not result.ok and result.bad_seq == 36
    assert "rolled back" in result.reason


def test_rollback_then_written_on_is_caught(log: Log, tmp_path: Path) -> None:
    """A rolled-back database the node then wrote more records to disagrees with the
    file's checkpoints of the same sizes."""
    log.engine.dispose()
    saved = tmp_path / "saved.db"
    shutil.copy(log.db, saved)
    log.fill(12)
    log.engine.dispose()
    shutil.copy(saved, log.db)
    for extra in ("-wal", "-shm"):
        (tmp_path / f"a.db{extra}").unlink(missing_ok=True)
    log.fill(12)  # other records at the same seqs, other roots (time differs)
    result = log.verify()
    assert not result.ok and "rolled back" in result.reason


def test_deleted_checkpoint_row_is_a_warning(log: Log) -> None:
    """A checkpoint row deleted from the table is reported; the file still vouches."""
    log.sql("DELETE FROM audit_checkpoints WHERE size = 11")
    result = log.verify()
    assert result.ok and any("not in the database" in w for w in result.warnings)


def test_torn_last_line_is_ignored_with_a_warning(log: Log) -> None:
    """A last line cut by a crash is ignored, with a warning; the log still verifies."""
    with log.file.open("ab") as f:
        f.write(b'{"size": 40, "root": "ab')
    result = log.verify()
    assert result.ok and any("incomplete" in w for w in result.warnings)
    log.fill(1)  # the next append closes the torn line and stands alone
    assert log.verify().ok


def test_incremental_reads_only_newer_records(log: Log) -> None:
    """--incremental starts at the last verified checkpoint; tampering after it is caught,
    tampering before it is left to the full verify."""
    assert log.verify().ok
    saved = json.loads(log.state.read_text())
    assert saved["size"] == 35 and saved["verifier_key"] == str(log.key.verifier)
    log.fill(10)
    result = log.verify(incremental=True)
    assert result.ok and result.since == 35 and result.records == 45
    assert json.loads(log.state.read_text())["size"] == 45
    log.fill(5)
    log.sql("UPDATE audit_log SET record = replace(record, '\"ok\"', '\"no\"') WHERE seq = 48")
    bad = log.verify(incremental=True)
    assert not bad.ok and bad.bad_seq == 48 and bad.since == 45


def test_incremental_sees_a_rollback_below_the_verified_size(log: Log) -> None:
    """Records gone below the verified size make the incremental verify fail."""
    assert log.verify().ok
    log.sql("DELETE FROM audit_log WHERE seq > 20")
    result = log.verify(incremental=True)
    assert not result.ok and "verified before" in result.reason


def test_wrong_verifier_key_fails(log: Log) -> None:
    """Under another key no checkpoint and no head verifies."""
    result = verify_log(
        log.engine,
        SigningKey.generate().verifier,
        checkpoint_file=log.file,
        processes=log.processes,
    )
    assert not result.ok and "not a checkpoint signed by this log's key" in result.reason
