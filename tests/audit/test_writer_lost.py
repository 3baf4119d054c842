"""Records in flight when the audit writer process dies after their commit, before its
answer reaches the node (audit/lost.py): appended again, they are not repeated."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from donjon.audit import AuditError, AuditEvent, AuditLog, verify_log
from donjon.audit.changes import append_again
from donjon.audit.lost import LostRecords
from donjon.secret import Secret
from donjon.store import connect, create_schema

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


def test_the_lost_records_a_new_writers_size_says_were_committed() -> None:
    """The first `size - at` lost records, from the first; none when the log grew by more
    than were lost (another writer) or shrank; a new death forgets the last one's."""
    events = [_event(i) for i in range(4)]
    lost = LostRecords()
    lost.lose(iter(events), 10)
    assert not any(lost.landed(e) for e in events)  # unknown yet
    lost.settle(12)
    assert [lost.landed(e) for e in events] == [True, True, False, False]
    for grown in (9, 15, 10):
        lost.lose(events, 10)
        lost.settle(grown)
        assert not any(lost.landed(e) for e in events), grown
    lost.lose(events, 10)
    lost.settle(14)
    assert all(lost.landed(e) for e in events)
    lost.lose(events[:1], 14)
    lost.settle(14)
    assert not any(lost.landed(e) for e in events)
