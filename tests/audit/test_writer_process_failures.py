"""The audit writer process when its database refuses a transaction (audit/writer.py,
audit/pipeline.py): small groups, committed by the reading thread, and large ones."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine

from donjon.audit import AuditError, AuditEvent, AuditLog, verify_log
from donjon.secret import Secret
from donjon.store import connect, create_schema

KEY = Secret(bytes(range(32)))


def _event(i: int, *, poison: bool = False) -> AuditEvent:
    detail: dict[str, object] = {"i": i}
    if poison:
        detail["poison"] = True
    return AuditEvent("key:a", "function.invoke", "f@1", "ok", detail)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = connect(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(e)
    assert e.url.database is not None
    with sqlite3.connect(e.url.database) as db:  # a real failure of the whole transaction
        db.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON audit_log WHEN instr(NEW.record, "
            "CAST('\"poison\":true' AS BLOB)) > 0 BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
        )
    return e


def _stored(engine: Engine) -> list[int]:
    assert engine.url.database is not None
    with sqlite3.connect(engine.url.database) as db:
        rows = db.execute("SELECT record FROM audit_log ORDER BY seq").fetchall()
    return [json.loads(r)["detail"]["i"] for (r,) in rows]


@pytest.mark.slow  # a writer process
def test_a_refused_small_group_fails_only_its_caller_and_the_writer_goes_on(
    engine: Engine,
) -> None:
    """One record at a time (each group committed inline): the record whose transaction
    the database refuses raises AuditError, the next ones take the next seqs, the same
    writer process serves them, and the log verifies."""
    log = AuditLog(engine, KEY)

    async def go() -> list[BaseException | None]:
        log.start(process=True)
        try:
            assert log._remote is not None
            pid = log._remote.pid
            results: list[BaseException | None] = []
            for i, poison in enumerate([False, True, False, True, True, False]):
                try:
                    await log.record(_event(i, poison=poison))
                    results.append(None)
                except AuditError as e:
                    results.append(e)
            assert log._remote.pid == pid, "the writer was restarted"
            return results
        finally:
            log.stop()

    results = asyncio.run(go())
    assert [r is None for r in results] == [True, False, True, False, False, True]
    assert all("could not be written" in str(r) for r in results if r is not None)
    assert _stored(engine) == [0, 2, 5]
    result = verify_log(engine, KEY)
    assert result.ok and result.records == 3


@pytest.mark.slow  # a writer process and a bounded load
@pytest.mark.parametrize(("waiters", "each"), [(1, 240), (96, 20)], ids=["inline", "two-stage"])
def test_what_is_answered_committed_is_exactly_what_is_stored(
    engine: Engine, waiters: int, each: int
) -> None:
    """Under load, one caller's every tenth record refused by the database: each caller
    whose record() returned has its record stored, none that got AuditError has, and
    the log verifies (a refused transaction fails its neighbours and what was queued on
    it; alone, only its own record)."""
    log = AuditLog(engine, KEY)
    accepted: set[int] = set()
    failed: set[int] = set()

    async def waiter(w: int) -> None:
        for k in range(each):
            i = w * 1000 + k
            try:
                await log.record(_event(i, poison=w == 0 and k % 10 == 5))
            except AuditError:
                failed.add(i)
            else:
                accepted.add(i)

    async def go() -> None:
        log.start(process=True)
        try:
            await asyncio.gather(*(waiter(w) for w in range(waiters)))
        finally:
            log.stop()

    asyncio.run(go())
    assert accepted and failed
    assert all(i >= 1000 or i % 10 != 5 for i in accepted)
    if waiters == 1:  # groups of one: only the refused records fail
        assert failed == {k for k in range(each) if k % 10 == 5}
    stored = _stored(engine)
    assert len(stored) == len(set(stored))
    assert set(stored) == accepted
    result = verify_log(engine, KEY)
    assert result.ok and result.records == len(accepted)


#: x86_64 system calls the SQLite busy handler sleeps in (usleep).
_SLEEPS = {"35", "230"}  # nanosleep, clock_nanosleep


def _main_thread_sleeps(pid: int) -> bool:
    """Is the process's main thread (the writer's reading thread) in a sleep call?"""
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split(" ", 1)[0] in _SLEEPS
    except OSError:
        return False


@pytest.mark.slow  # two writer processes, one killed
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="reads x86_64 system call numbers")
def test_a_writer_killed_inside_its_inline_transaction_loses_nothing_accepted(
    engine: Engine,
) -> None:
    """SIGKILL of the writer while the transaction its reading thread runs itself waits
    for the database: that record's caller gets AuditError, nothing of it is stored, a
    new writer takes over after the committed records and the log verifies."""
    log = AuditLog(engine, KEY)
    assert engine.url.database is not None
    path = engine.url.database

    async def go() -> None:
        log.start(process=True)
        try:
            assert log._remote is not None
            await log.record(_event(0))
            pid = log._remote.pid
            assert pid is not None
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # the writer's next transaction waits on it
            try:
                pending = asyncio.ensure_future(log.record(_event(1)))
                for _ in range(400):  # until its transaction waits for the lock (bounded)
                    if _main_thread_sleeps(pid):
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError("the writer's reading thread never waited for the lock")
                os.kill(pid, signal.SIGKILL)
                with pytest.raises(AuditError, match="could not be written"):
                    await pending
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            for _ in range(1200):  # a new writer, after reading the tree again (bounded)
                try:
                    await log.record(_event(2))
                    break
                except AuditError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("no new audit writer took over")
            assert log._remote.pid not in (None, pid)
        finally:
            log.stop()

    asyncio.run(go())
    assert _stored(engine) == [0, 2]
    result = verify_log(engine, KEY)
    assert result.ok and result.records == 2
