"""The writer's rows (audit/rows.py) and their multi-row INSERTs (audit/rawsql.py)."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from donjon.audit import AuditEvent, AuditLog, leaf_hash, rawsql, verify_log
from donjon.audit.entry import encode_entry, fill, to_wire, ts_tail
from donjon.audit.events import InvocationLog
from donjon.audit.pipeline import Pipeline
from donjon.audit.rawsql import RawStatements
from donjon.audit.rows import fill_rows, row_tuples
from donjon.audit.wire import COMMITTED, COMMITTED_BODY, FrameReader
from donjon.secret import Secret
from donjon.store import connect, create_schema
from postgres_support import PostgresServer, postgres_server

KEY = Secret(bytes(range(32)))
__all__ = ["postgres_server"]  # the fixture, used by name below


def _event(i: int) -> AuditEvent:
    return AuditEvent("key:a", "function.invoke", "f@1", "ok", {"i": i})


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = connect(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(e)
    return e


def test_rows_are_the_canonical_records_with_their_leaf_hashes() -> None:
    """Each row is the seq, the template filled with it and the batch's time, and its
    RFC 6962 leaf hash, whatever form the entry came in; only entries with a log or
    grant uses are kept as extras, at their seq."""
    tail = ts_tail(1_800_000_000.25)
    bare = encode_entry(_event(1)).template
    logged = InvocationLog("f", 1, "r", "ok", "out")
    wire = to_wire(_event(2), logged)
    entry = encode_entry(_event(3))
    rows = fill_rows([bare, wire, entry], 41, tail)
    assert rows.count == 3
    expected = [
        fill(t, seq, tail)
        for t, seq in (
            (bare, 42),
            (encode_entry(_event(2)).template, 43),
            (entry.template, 44),
        )
    ]
    assert [(s, bytes(r), bytes(h)) for s, r, h in row_tuples(rows.params)] == [
        (42 + i, rec, leaf_hash(rec)) for i, rec in enumerate(expected)
    ]
    # Bound as BLOBs without the driver's adapter lookup: the record without the leaf
    # hash's 0x00 prefix it was hashed with (audit/rows.py drops it in place).
    assert {(type(r), type(h)) for _, r, h in row_tuples(rows.params)} == {(bytearray, bytearray)}
    assert rows.hashes == [leaf_hash(rec) for rec in expected]
    assert [(seq, e.log) for seq, e in rows.extras] == [(43, logged)]


def test_a_wire_entry_that_is_not_what_to_wire_makes_is_refused() -> None:
    """A second 0x01 followed by something that is not the JSON extras raises ValueError."""
    with pytest.raises(ValueError, match=r"Expecting value|JSON"):
        fill_rows([b'{"a":\x01,"ts":\x01not json'], 0, ts_tail(1.0))


def test_a_transaction_across_insert_blocks_stores_every_record_in_order(
    engine: Engine,
) -> None:
    """One transaction of 261 records (INSERTs of 256, 4 and 1 rows) stores exactly those
    records, seqs 1..261, each the canonical bytes with its leaf hash, and verifies."""
    log = AuditLog(engine, KEY)
    log.hold_connection()
    ours, theirs = socket.socketpair()
    try:
        pipeline = Pipeline(theirs, log, 8192)
        pipeline.submit([to_wire(_event(i), None) for i in range(261)])
        pipeline.close()
        reader = FrameReader()
        frames = reader.feed(ours.recv(1 << 16))
    finally:
        log.stop()
        ours.close()
        theirs.close()
    assert [(k, COMMITTED_BODY.unpack(b)[:2]) for k, b in frames] == [(COMMITTED, (261, 1))]
    assert engine.url.database is not None
    with sqlite3.connect(engine.url.database) as db:
        stored = db.execute("SELECT seq, record, hash FROM audit_log ORDER BY seq").fetchall()
    assert [s for s, _, _ in stored] == list(range(1, 262))
    assert all(type(r) is bytes and bytes(h) == leaf_hash(r) for _, r, h in stored)
    assert [b'"i":%d' % i in r for i, (_, r, _) in enumerate(stored)] == [True] * 261
    result = verify_log(engine, KEY)
    assert result.ok and result.records == 261


def test_every_block_size_is_the_insert_sqlalchemy_compiles(engine: Engine) -> None:
    """The n-row INSERTs made from the one-row statement are, byte for byte, those
    SQLAlchemy compiles for the dialect, for every size the writer uses and others."""
    blocks = RawStatements(engine).blocks
    assert blocks is not None and blocks._parts is not None
    for rows in (256, 128, 64, 32, 16, 8, 4, 3, 2, 1):
        assert blocks.sql(rows) == blocks._compile(rows), rows
    assert blocks.sql(3).count("(?, ?, ?)") == 3


def test_a_dialect_whose_rows_are_not_a_repeated_tuple_is_compiled_per_size(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When SQLAlchemy's two-row INSERT is not the one-row VALUES tuple repeated, no size
    is made by repeating it: each is SQLAlchemy's own compile."""
    compiled: list[int] = []
    real = rawsql._RecordBlocks._compile

    def compile_(self: Any, rows: int) -> str:
        compiled.append(rows)
        sql = real(self, rows)
        return sql.replace("), (", "),(") if rows > 1 else sql  # another dialect's spacing

    monkeypatch.setattr(rawsql._RecordBlocks, "_compile", compile_)
    blocks = RawStatements(engine).blocks
    assert blocks is not None and blocks._parts is None
    assert blocks.sql(8).count("),(") == 7
    assert compiled == [1, 2, 8]


def _log(i: int) -> InvocationLog:
    """Call i's log; call 9's carries call 7's request id."""
    return InvocationLog("f", 1, "r7" if i == 9 else f"r{i}", "ok", f"out {i}")


@pytest.mark.slow
def test_on_postgresql_the_rows_go_through_executemany_and_verify(
    postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """On PostgreSQL (no multi-row blocks) a transaction of 261 records, three of them
    with an invocation log (two under one request id), stores every record in order with
    its leaf hash and the first of the two logs, and the log verifies."""
    engine = connect(postgres_server.url)
    try:
        create_schema(engine)
        log = AuditLog(engine, KEY)
        assert log._sql.blocks is None
        log._write([(_event(i), _log(i) if i in (7, 9, 200) else None) for i in range(261)])
        with engine.connect() as conn:
            stored = conn.exec_driver_sql(
                "SELECT seq, record, hash FROM audit_log ORDER BY seq"
            ).all()
            logs = conn.exec_driver_sql(
                "SELECT request_id, output FROM invocation_logs ORDER BY id"
            ).all()
        assert [s for s, _, _ in stored] == list(range(1, 262))
        assert all(bytes(h) == leaf_hash(bytes(r)) for _, r, h in stored)
        assert [tuple(row) for row in logs] == [("r7", "out 7"), ("r200", "out 200")]
        assert "1 invocation log(s) not stored" in caplog.text
        result = verify_log(engine, KEY)
        assert result.ok and result.records == 261
    finally:
        engine.dispose()
