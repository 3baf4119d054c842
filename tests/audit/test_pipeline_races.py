"""The audit pipeline's commit hand-over under races (audit/pipeline.py): the reading
thread's inline commit against the commit thread's transactions, timed checkpoints,
failures and close(), each race pinned with events in a wrapper, never with sleeps."""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from donjon.audit import AuditEvent, AuditLog, verify_log
from donjon.audit.checkpoints import CheckpointEntry
from donjon.audit.entry import to_wire
from donjon.audit.log import Prepared
from donjon.audit.pipeline import INLINE_MAX, Pipeline
from donjon.audit.wire import COMMITTED, COMMITTED_BODY, COUNT, FAILED, FrameReader
from donjon.secret import Secret
from donjon.store import connect, create_schema

KEY = Secret(bytes(range(32)))
COMMIT_THREAD = "audit-commit"
WAIT_S = 60.0  # a bound on every wait, so that a broken pipeline fails instead of hanging
Answer = tuple[str, int, int]  # kind, count, first seq (0 for FAILED)


def _wire(tag: str, n: int) -> list[bytes]:
    return [
        to_wire(AuditEvent("key:a", "function.invoke", "f@1", "ok", {"tag": tag, "i": i}), None)
        for i in range(n)
    ]


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = connect(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(e)
    return e


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(WAIT_S)
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


def _answers(sock: socket.socket, records: int) -> list[Answer]:
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


def _poison(engine: Engine) -> None:
    """A real database failure: any record tagged poison aborts its transaction."""
    assert engine.url.database is not None
    with sqlite3.connect(engine.url.database) as db:
        db.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON audit_log WHEN instr(NEW.record, "
            "CAST('\"tag\":\"poison\"' AS BLOB)) > 0 BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
        )


def _stored_tags(engine: Engine) -> list[str]:
    assert engine.url.database is not None
    with sqlite3.connect(engine.url.database) as db:
        rows = db.execute("SELECT record FROM audit_log ORDER BY seq").fetchall()
    return [bytes(r).split(b'"tag":"', 1)[1].split(b'"', 1)[0].decode() for (r,) in rows]


class _Stores:
    """Records the thread of each real `AuditLog.store` and its chunks' sizes; the
    first store waits at `gate` once `held` is called."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.entered = threading.Event()
        self._gate: threading.Event | None = None
        real = AuditLog.store

        def store(log: AuditLog, chunks: Sequence[Prepared]) -> CheckpointEntry | None:
            self.calls.append((threading.current_thread().name, [c.count for c in chunks]))
            gate, self._gate = self._gate, None
            if gate is not None:
                self.entered.set()
                assert gate.wait(WAIT_S), "the test never opened the gate"
            return real(log, chunks)

        monkeypatch.setattr(AuditLog, "store", store)

    def held(self) -> threading.Event:
        self._gate = threading.Event()
        return self._gate


def _in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as e:  # reported by the test that joins
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_after_the_commit_thread_fails_closed_nothing_more_is_committed(
    engine: Engine,
    sockets: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the commit thread has failed closed on a bug (the node fails every record in
    flight), a small chunk read after it is not committed by the reading thread either."""
    real = Pipeline._answer

    def answer(self: Pipeline, chunks: list[Any], error: Exception | None, s: float) -> None:
        if threading.current_thread().name == COMMIT_THREAD:
            raise RuntimeError("a bug in answering")
        real(self, chunks, error, s)

    monkeypatch.setattr(Pipeline, "_answer", answer)
    ours, theirs = sockets
    log = AuditLog(engine, KEY)
    log.hold_connection()
    pipeline = Pipeline(theirs, log, 8192)
    try:
        pipeline.submit(_wire("big", INLINE_MAX + 1))  # the commit thread's: it breaks
        assert ours.recv(1 << 16) == b""  # it failed closed: the node fails what is in flight
        assert pipeline.gone
        pipeline.submit(_wire("late", 1))  # read before the reading thread saw `gone`
        pipeline.close()
    finally:
        log.stop()
    assert "late" not in _stored_tags(engine)
    assert verify_log(engine, KEY).ok
