"""The writer process's two stages (audit/pipeline.py), driven directly over a socketpair."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine

from donjon.audit import AuditLog, verify_log
from donjon.audit.checkpoints import CheckpointEntry
from donjon.audit.log import Prepared
from donjon.audit.pipeline import INLINE_MAX, Pipeline
from donjon.config import AuditSettings
from pipeline_support import KEY, answers, audit_engine, poison, wire


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return audit_engine(tmp_path)


@pytest.fixture
def rig(engine: Engine) -> Iterator[tuple[Pipeline, socket.socket, AuditLog]]:
    log = AuditLog(engine, KEY)
    log.hold_connection()
    ours, theirs = socket.socketpair()
    pipeline = Pipeline(theirs, log, 8192)
    try:
        yield pipeline, ours, log
    finally:
        pipeline.close()
        log.stop()
        ours.close()
        theirs.close()


def test_chunks_are_answered_in_order_once_durable(
    rig: tuple[Pipeline, socket.socket, AuditLog], engine: Engine
) -> None:
    """Each chunk gets its answer, in the order submitted, with the seqs it was given."""
    pipeline, sock, _ = rig
    pipeline.submit(wire("a", 3))
    pipeline.submit(wire("b", 2))
    assert answers(sock, 5) == [("committed", 3, 1), ("committed", 2, 4)]
    result = verify_log(engine, KEY)
    assert result.ok and result.records == 5


def test_a_failed_transaction_fails_its_records_and_the_next_follow_the_committed_tree(
    rig: tuple[Pipeline, socket.socket, AuditLog], engine: Engine
) -> None:
    """A transaction the database refuses writes none of its records and answers them
    FAILED (with any chunk prepared on top of them); what is answered COMMITTED is
    exactly what is stored, and later records take the seqs after it."""
    pipeline, sock, _ = rig
    pipeline.submit(wire("ok", 2))
    assert answers(sock, 2) == [("committed", 2, 1)]
    poison(engine)
    pipeline.submit(wire("before", 2))
    pipeline.submit(wire("poison", 1))
    pipeline.submit(wire("after", 2))
    got = answers(sock, 5)
    assert [n for _, n, _ in got] == [2, 1, 2]  # one answer per chunk, in order
    assert got[1][0] == "failed"  # how the others group depends on timing
    committed = [(n, first) for kind, n, first in got if kind == "committed"]
    seq = 3
    for n, first in committed:
        assert first == seq
        seq += n
    pipeline.submit(wire("later", 3))
    assert answers(sock, 3) == [("committed", 3, seq)]
    result = verify_log(engine, KEY)
    assert result.ok and result.records == seq + 2
    assert engine.url.database is not None
    with sqlite3.connect(engine.url.database) as db:
        stored = [r[0] for r in db.execute("SELECT record FROM audit_log ORDER BY seq")]
    for tag, (kind, _, _) in zip(("before", "poison", "after"), got, strict=True):
        assert any(f'"tag":"{tag}"'.encode() in r for r in stored) == (kind == "committed")


def test_records_that_are_not_wire_entries_fail_alone_in_their_turn(
    rig: tuple[Pipeline, socket.socket, AuditLog], engine: Engine
) -> None:
    """A chunk that cannot be read is answered FAILED in its place; its neighbours commit."""
    pipeline, sock, _ = rig
    pipeline.submit(wire("a", 1))
    pipeline.submit([b"{\x01\x01not json"])
    pipeline.submit(wire("b", 1))
    assert answers(sock, 3) == [("committed", 1, 1), ("failed", 1, 0), ("committed", 1, 2)]
    assert verify_log(engine, KEY).records == 2


def test_close_commits_an_unfinished_burst(engine: Engine) -> None:
    """Records whose burst never ended (the node stopped) are committed and answered at close."""
    log = AuditLog(engine, KEY)
    log.hold_connection()
    ours, theirs = socket.socketpair()
    try:
        pipeline = Pipeline(theirs, log, 8192)
        pipeline.submit(wire("a", INLINE_MAX + 1))  # queued: too many to commit inline
        pipeline.close()
        assert answers(ours, INLINE_MAX + 1) == [("committed", INLINE_MAX + 1, 1)]
    finally:
        log.stop()
        ours.close()
        theirs.close()
    assert verify_log(engine, KEY).records == INLINE_MAX + 1


@pytest.mark.parametrize("records", [2, INLINE_MAX + 1], ids=["inline", "commit-thread"])
def test_a_commit_thread_that_breaks_closes_the_socket(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, records: int
) -> None:
    """If the thread committing fails (a bug: the reading thread's inline commit or the
    commit thread's), the node's end sees the socket close (so it fails its callers
    closed and restarts the writer) instead of waiting."""

    def broken(*args: object) -> None:
        raise RuntimeError("a bug in answering")

    monkeypatch.setattr(Pipeline, "_answer", broken)
    log = AuditLog(engine, KEY)
    log.hold_connection()
    ours, theirs = socket.socketpair()
    ours.settimeout(60)
    try:
        pipeline = Pipeline(theirs, log, 8192)
        pipeline.submit(wire("a", records))
        assert ours.recv(1 << 16) == b""
        pipeline.close()
        assert pipeline.gone
    finally:
        log.stop()
        ours.close()
        theirs.close()


class _StoreSpy:
    """Records which thread ran each real `AuditLog.store` and how many records each
    chunk of it held; `gate`, when set, holds the next store until it is opened."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        real = AuditLog.store

        def store(log: AuditLog, chunks: Sequence[Prepared]) -> CheckpointEntry | None:
            self.calls.append((threading.current_thread().name, [c.count for c in chunks]))
            self.entered.set()
            gate, self.gate = self.gate, None
            if gate is not None:
                assert gate.wait(60), "the test never opened the gate"
            return real(log, chunks)

        monkeypatch.setattr(AuditLog, "store", store)


def test_a_small_chunk_met_by_an_idle_commit_is_committed_by_its_own_thread(
    rig: tuple[Pipeline, socket.socket, AuditLog],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chunks of up to INLINE_MAX records, each submitted once the one before is
    answered, are committed by the thread that submits them, one transaction each;
    a larger chunk is handed to the commit thread."""
    spy = _StoreSpy(monkeypatch)
    pipeline, sock, _ = rig
    me = threading.current_thread().name
    pipeline.submit(wire("a", 1))
    assert answers(sock, 1) == [("committed", 1, 1)]
    pipeline.submit(wire("b", INLINE_MAX))
    assert answers(sock, INLINE_MAX) == [("committed", INLINE_MAX, 2)]
    pipeline.submit(wire("c", INLINE_MAX + 1))
    assert answers(sock, INLINE_MAX + 1) == [("committed", INLINE_MAX + 1, INLINE_MAX + 2)]
    assert spy.calls == [(me, [1]), (me, [INLINE_MAX]), ("audit-commit", [INLINE_MAX + 1])]
    assert verify_log(engine, KEY).records == 2 * INLINE_MAX + 2


def test_records_that_come_while_a_commit_runs_are_prepared_and_share_the_next(
    rig: tuple[Pipeline, socket.socket, AuditLog],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While a transaction runs, small chunks are not committed inline: they are
    prepared, queued and committed together in the next transaction, answered in order."""
    spy = _StoreSpy(monkeypatch)
    gate = spy.gate = threading.Event()
    pipeline, sock, _ = rig
    pipeline.submit(wire("big", INLINE_MAX + 1))
    assert spy.entered.wait(60)  # the commit thread holds the commit, at the gate
    pipeline.submit(wire("small", 1))  # returns: queued, not committed here
    pipeline.submit(wire("small", 2))
    gate.set()
    assert answers(sock, INLINE_MAX + 4) == [
        ("committed", INLINE_MAX + 1, 1),
        ("committed", 1, INLINE_MAX + 2),
        ("committed", 2, INLINE_MAX + 3),
    ]
    assert spy.calls == [("audit-commit", [INLINE_MAX + 1]), ("audit-commit", [1, 2])]
    assert verify_log(engine, KEY).records == INLINE_MAX + 4


def test_a_failed_inline_commit_fails_its_records_and_the_next_follow_the_committed_tree(
    rig: tuple[Pipeline, socket.socket, AuditLog],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An inline transaction the database refuses answers its chunk FAILED, writes
    nothing of it, and the next records take the seqs after the committed ones."""
    spy = _StoreSpy(monkeypatch)
    pipeline, sock, _ = rig
    me = threading.current_thread().name
    pipeline.submit(wire("ok", 2))
    poison(engine)
    pipeline.submit(wire("poison", 2))
    pipeline.submit(wire("after", 1))
    assert answers(sock, 5) == [("committed", 2, 1), ("failed", 2, 0), ("committed", 1, 3)]
    assert [thread for thread, _ in spy.calls] == [me, me, me]
    result = verify_log(engine, KEY)
    assert result.ok and result.records == 3


def test_records_committed_inline_are_checkpointed_by_time(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idle commit thread, asleep with nothing to checkpoint, still makes the timed
    checkpoint of records the reading thread committed meanwhile."""
    spy = _StoreSpy(monkeypatch)
    log = AuditLog(engine, KEY, settings=AuditSettings(checkpoint_s=0.2))
    log.hold_connection()
    log.checkpoint()  # as the writer starts: nothing left to checkpoint
    ours, theirs = socket.socketpair()
    pipeline = Pipeline(theirs, log, 8192)
    try:
        pipeline.submit(wire("a", 2))
        assert answers(ours, 2) == [("committed", 2, 1)]
        assert spy.calls == [(threading.current_thread().name, [2])]
        assert engine.url.database is not None
        deadline = time.monotonic() + 30
        size = 0
        while size < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            with sqlite3.connect(engine.url.database) as db:
                ((size,),) = db.execute("SELECT coalesce(max(size), 0) FROM audit_checkpoints")
        assert size == 2, "no checkpoint by time covered the inline commit"
    finally:
        pipeline.close()
        log.stop()
        ours.close()
        theirs.close()
