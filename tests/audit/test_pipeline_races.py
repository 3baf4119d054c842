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

from donjon.audit import AuditLog, verify_log
from donjon.audit.checkpoints import CheckpointEntry, Checkpointer
from donjon.audit.frontier import Frontier
from donjon.audit.log import Prepared
from donjon.audit.pipeline import INLINE_MAX, Pipeline
from donjon.config import AuditSettings
from pipeline_support import KEY, answers, audit_engine, poison, wire

COMMIT_THREAD = "audit-commit"
WAIT_S = 60.0  # a bound on every wait, so that a broken pipeline fails instead of hanging


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return audit_engine(tmp_path)


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(WAIT_S)
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


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
        pipeline.submit(wire("big", INLINE_MAX + 1))  # the commit thread's: it breaks
        assert ours.recv(1 << 16) == b""  # it failed closed: the node fails what is in flight
        assert pipeline.gone
        pipeline.submit(wire("late", 1))  # read before the reading thread saw `gone`
        pipeline.close()
    finally:
        log.stop()
    assert "late" not in _stored_tags(engine)
    assert verify_log(engine, KEY).ok


def test_after_the_idle_commit_thread_fails_closed_nothing_is_committed(
    engine: Engine,
    sockets: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A commit thread that breaks while it waits for records (a bug, nothing claimed)
    fails closed; a small chunk read after that is not committed inline by the reading
    thread."""
    real = Checkpointer.seconds_until_due

    def seconds_until_due(checkpointer: Checkpointer, size: int, now: float) -> float | None:
        if threading.current_thread().name == COMMIT_THREAD:
            raise RuntimeError("a bug in the cadence")
        return real(checkpointer, size, now)

    monkeypatch.setattr(Checkpointer, "seconds_until_due", seconds_until_due)
    ours, theirs = sockets
    log = AuditLog(engine, KEY)
    log.hold_connection()
    pipeline = Pipeline(theirs, log, 8192)
    try:
        assert ours.recv(1 << 16) == b""  # it failed closed: the node fails what is in flight
        assert pipeline.gone
        pipeline.submit(wire("late", 1))  # read before the reading thread saw `gone`
        pipeline.close()
    finally:
        log.stop()
    assert _stored_tags(engine) == []


def test_a_chunk_read_during_a_timed_checkpoint_waits_for_it(
    engine: Engine,
    sockets: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the commit thread makes a checkpoint by time it holds the commit: a small
    chunk read meanwhile is queued, not committed inline beside it, and is committed by
    the commit thread once the checkpoint is done."""
    stores = _Stores(monkeypatch)
    entered, go = threading.Event(), threading.Event()
    real = AuditLog.checkpoint

    def checkpoint(log: AuditLog, *, force: bool = True) -> CheckpointEntry | None:
        if threading.current_thread().name == COMMIT_THREAD and not force:
            entered.set()
            assert go.wait(WAIT_S), "the test never let the checkpoint go"
        return real(log, force=force)

    monkeypatch.setattr(AuditLog, "checkpoint", checkpoint)
    ours, theirs = sockets
    log = AuditLog(engine, KEY, settings=AuditSettings(checkpoint_s=0.2))
    log.hold_connection()
    log.checkpoint()  # as the writer starts: nothing left to checkpoint
    pipeline = Pipeline(theirs, log, 8192)
    me = threading.current_thread().name
    try:
        pipeline.submit(wire("a", 1))
        assert answers(ours, 1) == [("committed", 1, 1)]
        assert entered.wait(WAIT_S), "no checkpoint by time of the inline commit"
        pipeline.submit(wire("b", 1))  # returns at once: queued behind the checkpoint
        assert stores.calls == [(me, [1])]
        go.set()
        assert answers(ours, 1) == [("committed", 1, 2)]
        assert stores.calls == [(me, [1]), (COMMIT_THREAD, [1])]
    finally:
        go.set()
        pipeline.close()
        log.stop()
    assert engine.url.database is not None
    with sqlite3.connect(engine.url.database) as db:
        sizes = [s for (s,) in db.execute("SELECT size FROM audit_checkpoints ORDER BY size")]
    assert 1 in sizes  # the timed checkpoint covered the inline commit
    assert verify_log(engine, KEY).records == 2


def test_a_chunk_prepared_while_the_transaction_under_it_fails_is_prepared_again(
    engine: Engine,
    sockets: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A small chunk prepared on records whose transaction then fails is not committed on
    that tree (the generation check): it is prepared again after the committed records,
    committed with their next seq, and answered after the failed chunk."""
    stores = _Stores(monkeypatch)
    prepared, go = threading.Event(), threading.Event()
    real = AuditLog.prepare
    tips: list[int] = []

    def prepare(log: AuditLog, entries: Sequence[Any], frontier: Frontier) -> Prepared:
        tips.append(frontier.size)
        chunk = real(log, entries, frontier)
        if len(tips) == 2:  # the small chunk, prepared on the poisoned records
            prepared.set()
            assert go.wait(WAIT_S), "the test never let the preparing go on"
        return chunk

    monkeypatch.setattr(AuditLog, "prepare", prepare)
    ours, theirs = sockets
    log = AuditLog(engine, KEY)
    log.hold_connection()
    poison(engine)
    pipeline = Pipeline(theirs, log, 8192)
    try:
        gate = stores.held()
        pipeline.submit(wire("poison", INLINE_MAX + 1))  # the commit thread's
        assert stores.entered.wait(WAIT_S)
        small, errors = _in_thread(lambda: pipeline.submit(wire("small", 1)))
        assert prepared.wait(WAIT_S)
        gate.set()  # the transaction fails and the tree goes back
        assert answers(ours, INLINE_MAX + 1) == [("failed", INLINE_MAX + 1, 0)]
        go.set()
        small.join(WAIT_S)
        assert not small.is_alive() and not errors
        assert answers(ours, 1) == [("committed", 1, 1)]
    finally:
        go.set()
        pipeline.close()
        log.stop()
    assert tips == [0, INLINE_MAX + 1, 0]  # prepared again, on the committed tree
    assert _stored_tags(engine) == ["small"]
    assert verify_log(engine, KEY).ok


def test_close_commits_the_chunks_queued_behind_a_running_transaction(
    engine: Engine,
    sockets: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """close() called while a transaction runs and small chunks wait behind it returns only
    once every one of them is committed and answered, in order."""
    stores = _Stores(monkeypatch)
    ours, theirs = sockets
    log = AuditLog(engine, KEY)
    log.hold_connection()
    pipeline = Pipeline(theirs, log, 8192)
    gate = stores.held()
    try:
        pipeline.submit(wire("big", INLINE_MAX + 1))
        assert stores.entered.wait(WAIT_S)
        pipeline.submit(wire("small", 1))  # queued: the commit is held
        pipeline.submit(wire("small", 2))
        closing, errors = _in_thread(pipeline.close)
        for _ in range(int(WAIT_S / 0.01)):  # until close() has said so (bounded)
            if pipeline._closing:
                break
            threading.Event().wait(0.01)
        assert pipeline._closing
        gate.set()
        closing.join(WAIT_S)
        assert not closing.is_alive() and not errors
    finally:
        gate.set()
        pipeline.close()
        log.stop()
    assert answers(ours, INLINE_MAX + 4) == [
        ("committed", INLINE_MAX + 1, 1),
        ("committed", 1, INLINE_MAX + 2),
        ("committed", 2, INLINE_MAX + 3),
    ]
    assert stores.calls == [(COMMIT_THREAD, [INLINE_MAX + 1]), (COMMIT_THREAD, [1, 2])]
    assert verify_log(engine, KEY).records == INLINE_MAX + 4
