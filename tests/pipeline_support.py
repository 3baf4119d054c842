"""What the audit pipeline's tests share: reading its answers off the socket, and a real
database failure for chosen records (tests/audit/test_pipeline*.py)."""

from __future__ import annotations

import socket
import sqlite3

from sqlalchemy import Engine

from donjon.audit.wire import COMMITTED, COMMITTED_BODY, COUNT, FAILED, FrameReader

__all__ = ["Answer", "answers", "poison"]

Answer = tuple[str, int, int]  # kind, count, first seq (0 for FAILED)


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
