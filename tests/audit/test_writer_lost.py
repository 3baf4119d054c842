"""Records in flight when the audit writer process dies after their commit, before its
answer reaches the node (audit/lost.py): appended again, they are not repeated."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from donjon.audit import AuditError, AuditEvent, AuditLog, verify_log
from donjon.audit.changes import AuditedChanges, append_again
from donjon.audit.lost import KEPT, LostRecords
from donjon.secret import Secret
from donjon.store import connect, create_schema
from donjon.store.audit_outbox import AuditOutbox
from donjon.store.tables import audit_outbox

KEY = Secret(bytes(range(32)))


def _event(i: int) -> AuditEvent:
    return AuditEvent("system", "invocation.attempt", "f@1", "ok", {"i": i})


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = connect(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(e)
    return e


def _stored(engine: Engine) -> list[int]:
    assert engine.url.database is not None
    with sqlite3.connect(engine.url.database) as db:
        rows = db.execute("SELECT record FROM audit_log ORDER BY seq").fetchall()
    return [json.loads(r)["detail"]["i"] for (r,) in rows]


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.mark.slow  # two writer processes, one killed
def test_a_record_its_killed_writer_committed_unanswered_is_not_appended_again(
    engine: Engine,
) -> None:
    """The writer commits record 3, then dies before the node reads its answer (the answer
    taken off its socket, as a kill before the write would leave it); record 4 was queued
    behind it, uncommitted. Both callers get AuditError; appending both again (as the queue's
    workers and admin changes do) stores 3 once and 4 once, and the log verifies."""
    log = AuditLog(engine, KEY)

    async def go() -> None:
        log.start(process=True)
        try:
            remote = log._remote
            assert remote is not None and remote._sock is not None and remote._loop is not None
            for i in range(3):
                await log.record(_event(i))
            pid, sock = remote.pid, remote._sock
            assert pid is not None
            remote._loop.remove_reader(sock)  # the node does not read the answer
            committed, queued = _event(3), _event(4)
            first = asyncio.ensure_future(log.record(committed))
            for _ in range(400):  # until the writer has committed it (bounded)
                if _stored(engine) == [0, 1, 2, 3]:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the writer never committed the record")
            time.sleep(0.2)  # its answer written, then taken away unread
            sock.setblocking(False)
            assert sock.recv(1 << 16), "the writer answered nothing"
            os.kill(pid, signal.SIGKILL)
            for _ in range(400):
                if _gone(pid):
                    break
                await asyncio.sleep(0.01)
            second = asyncio.ensure_future(log.record(queued))
            await asyncio.sleep(0.05)  # flushed to the dead writer's socket
            remote._loop.add_reader(sock, remote._readable)  # it reads the end
            for pending in (first, second):
                with pytest.raises(AuditError):
                    await pending
            assert not log.landed(committed)  # not known until a new writer read the log
            await append_again(log, committed, 60.0)
            await append_again(log, queued, 60.0)
            assert log.landed(committed) and not log.landed(queued)
            assert not log.landed(_event(3))  # by identity: an equal record is another one
            assert remote.pid not in (None, pid)
        finally:
            log.stop()

    asyncio.run(go())
    assert _stored(engine) == [0, 1, 2, 3, 4]
    result = verify_log(engine, KEY)
    assert result.ok and result.records == 5


async def _until(done: Callable[[], bool], what: str) -> None:
    for _ in range(1000):  # bounded: 10 s
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


async def _answer_lost(
    log: AuditLog, append: Callable[[], Awaitable[object]], committed: Callable[[], bool]
) -> int:
    """Run `append` while the node does not read the writer's answers; once `committed`,
    take the answer off the socket unread and SIGKILL the writer; `append` must then raise
    AuditError. The dead writer's pid."""
    remote = log._remote
    assert remote is not None and remote._sock is not None and remote._loop is not None
    pid, sock = remote.pid, remote._sock
    assert pid is not None
    remote._loop.remove_reader(sock)  # the node does not read the answer
    appending = asyncio.ensure_future(append())
    await _until(committed, "the writer never committed the record")
    time.sleep(0.2)  # its answer written, then taken away unread
    sock.setblocking(False)
    assert sock.recv(1 << 16), "the writer answered nothing"
    os.kill(pid, signal.SIGKILL)
    await _until(lambda: _gone(pid), "the writer did not die")
    remote._loop.add_reader(sock, remote._readable)  # it reads the end
    with pytest.raises(AuditError):
        await appending
    return pid


@pytest.mark.slow  # three writer processes, two killed
def test_a_record_known_committed_stays_known_through_a_second_death(engine: Engine) -> None:
    """Record 3 is committed unanswered and its writer killed; the new writer reads the log
    (3 known committed), then dies too before 3's caller, asleep in `append_again`'s pause
    (up to 1 s), asks again; a third writer reads the log. 3's caller then finds it
    committed: before, the second death's settling forgot it, and 3 was stored twice."""
    log = AuditLog(engine, KEY)

    async def go() -> None:
        log.start(process=True)
        try:
            remote = log._remote
            assert remote is not None and remote._sock is not None and remote._loop is not None
            for i in range(3):
                await log.record(_event(i))
            committed = _event(3)
            pid = await _answer_lost(
                log, lambda: log.record(committed), lambda: _stored(engine) == [0, 1, 2, 3]
            )
            await _until(lambda: remote.pid != pid and log.writer_state == "ok", "no writer 2")
            second = remote.pid
            assert second is not None and log.landed(committed)
            os.kill(second, signal.SIGKILL)  # writer 2 dies with nothing in flight
            await _until(lambda: log.writer_state != "ok", "writer 2's death unseen")
            await _until(lambda: remote.pid != second and log.writer_state == "ok", "no 3")
            if not log.landed(committed):  # what append_again asks after its pause
                await log.record(committed)
            await log.record(_event(4))
        finally:
            log.stop()

    asyncio.run(go())
    assert _stored(engine) == [0, 1, 2, 3, 4]
    result = verify_log(engine, KEY)
    assert result.ok and result.records == 5


@pytest.mark.slow  # two writer processes, one killed
def test_a_drained_record_its_killed_writer_committed_is_not_appended_again(
    engine: Engine,
) -> None:
    """A drain appends an outbox row's record (a change whose own append failed); the
    writer commits it and dies unanswered: the drain fails, the row stays. The next drain
    finds that record in the log (the same object, `AuditLog.landed`) and deletes the row
    without appending it again. Before, each round made the record anew: stored twice."""
    with engine.begin() as conn:  # a row as a change whose append failed left it
        event = {"actor": "key:a", "action": "role.apply", "target": "role:r", "outcome": "ok"}
        conn.execute(
            insert(audit_outbox).values(
                id="row-1", event=json.dumps({**event, "detail": {}}), created_at=time.time()
            )
        )
    log = AuditLog(engine, KEY)

    def applied() -> int:
        assert engine.url.database is not None
        with sqlite3.connect(engine.url.database) as db:
            rows = db.execute("SELECT record FROM audit_log").fetchall()
        return sum(json.loads(r)["action"] == "role.apply" for (r,) in rows)

    async def go() -> None:
        log.start(process=True)
        try:
            remote = log._remote
            assert remote is not None
            changes = AuditedChanges(log, AuditOutbox(engine), lease_s=0.0)
            pid = await _answer_lost(log, changes.drain, lambda: applied() == 1)
            await _until(lambda: remote.pid != pid and log.writer_state == "ok", "no writer 2")
            assert await changes.drain() == 1  # (counted: the row's record is in the log)
            assert AuditOutbox(engine).waiting() == []
        finally:
            log.stop()

    asyncio.run(go())
    assert applied() == 1
    assert verify_log(engine, KEY).ok


def test_the_lost_records_a_new_writers_size_says_were_committed() -> None:
    """The first `size - at` lost records, from the first; none when the log grew by more
    than were lost (another writer) or shrank; what a death's settling knew stays known
    through the next deaths, up to `KEPT` of them."""
    events = [_event(i) for i in range(4)]
    lost = LostRecords()
    lost.lose(iter(events), 10)
    assert not any(lost.landed(e) for e in events)  # unknown yet
    lost.settle(12)
    assert [lost.landed(e) for e in events] == [True, True, False, False]
    for grown in (9, 15, 10):
        fresh = LostRecords()
        fresh.lose(events, 10)
        fresh.settle(grown)
        assert not any(fresh.landed(e) for e in events), grown
    later = [_event(i) for i in range(4, 6)]
    lost.lose(later, 12)
    lost.settle(13)  # a second death: 4 committed, and 0 and 1 still known
    assert [lost.landed(e) for e in events + later] == [True, True, False, False, True, False]
    for _ in range(KEPT - 1):  # deaths with nothing in flight forget nothing
        lost.lose([], 13)
        lost.settle(13)
    assert lost.landed(events[0]) and lost.landed(later[0])
    for n in range(KEPT - 1):  # KEPT deaths that each knew a record: the oldest forgotten
        lost.lose([_event(10 + n)], 13 + n)
        lost.settle(14 + n)
    assert not lost.landed(events[0]) and lost.landed(later[0])
