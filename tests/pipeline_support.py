"""What the audit pipeline's tests share: records to send, a database, reading the answers
off the socket, and a real database failure for chosen records (tests/audit/test_pipeline*.py)."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

from sqlalchemy import Engine

from donjon.audit import AuditEvent
from donjon.audit.entry import to_wire
from donjon.audit.wire import COMMITTED, COMMITTED_BODY, COUNT, FAILED, FrameReader
from donjon.secret import Secret
from donjon.store import connect, create_schema

__all__ = ["KEY", "Answer", "answers", "audit_engine", "poison", "wire"]

KEY = Secret(bytes(range(32)))
Answer = tuple[str, int, int]  # kind, count, first seq (0 for FAILED)


def wire(tag: str, n: int) -> list[bytes]:
    """`n` records tagged `tag` (numbered in `i`), as the node sends them."""
    return [
        to_wire(AuditEvent("key:a", "function.invoke", "f@1", "ok", {"tag": tag, "i": i}), None)
        for i in range(n)
    ]


def audit_engine(directory: Path) -> Engine:
    """A fresh SQLite database in `directory` with the audit schema."""
    engine = connect(f"sqlite:///{directory / 'a.db'}")
    create_schema(engine)
    return engine


def answers(sock: socket.socket, records: int) -> list[Answer]:
    """Read answers until they cover `records` records."""
    reader = FrameReader()
    out: list[Answer] = []
    while sum(n for _, n, _ in out) < records:
        data = sock.recv(1 << 16)
        assert data, "the pipeline closed its socket"
        for kind, body in reader.feed(data):
            if kind == COMMITTED:
                count, first, _, _ = COMMITTED_BODY.unpack(body)
                out.append(("committed", count, first))
            else:
                assert kind == FAILED
                out.append(("failed", COUNT.unpack_from(body)[0], 0))
    return out


def poison(engine: Engine) -> None:
    """A real database failure: any record tagged poison aborts its transaction."""
    assert engine.url.database is not None
    with sqlite3.connect(engine.url.database) as db:
        db.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON audit_log WHEN instr(NEW.record, "
            "CAST('\"tag\":\"poison\"' AS BLOB)) > 0 BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
        )
