"""The audit writer process on a real PostgreSQL whose connection is lost at a COMMIT
(tests/pg_cut_support.py: the server committed, its answer never came): the writer
cannot tell whether its records are stored, and its one connection is gone. It ends
unanswered (audit/pipeline.py), as a killed writer does: the node starts a new one, the
records it had in flight are known committed from the new writer's size (audit/lost.py),
and appending them again does not repeat them. Before, the writer answered them FAILED
(though stored: appended again, repeated) and then failed every record that came after
on its dead connection, for as long as the node ran, its state saying "ok"."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from donjon.audit import AuditEvent, AuditLog, verify_log
from donjon.audit.changes import append_again
from donjon.secret import Secret
from donjon.store import connect
from pg_cut_support import CommitCutter, relayed_postgres
from postgres_support import PostgresServer

pytestmark = pytest.mark.slow  # a PostgreSQL server, two writer processes

KEY = Secret(bytes(range(32)))


def _event(i: int) -> AuditEvent:
    return AuditEvent("system", "invocation.attempt", "f@1", "ok", {"i": i})


@pytest.fixture
def relay() -> Iterator[tuple[PostgresServer, CommitCutter]]:
    with relayed_postgres() as relayed:
        yield relayed


def _stored(server: PostgresServer) -> list[int]:
    with server.connect() as conn:
        rows = conn.execute("SELECT record FROM audit_log ORDER BY seq").fetchall()
    return [json.loads(bytes(r[0]))["detail"]["i"] for r in rows]


def test_a_writer_whose_commit_answer_is_lost_is_replaced_and_repeats_nothing(
    relay: tuple[PostgresServer, CommitCutter],
) -> None:
    """Record 3's COMMIT is cut after the server committed it: appended again (as an
    admin change's or a queued call's record is), it is stored once; the records after it
    are appended (by a new writer); the log verifies."""
    server, cutter = relay
    engine = connect(server.url.replace(f":{server.port}/", f":{cutter.port}/"))
    log = AuditLog(engine, KEY)

    async def go() -> None:
        log.start(process=True)
        try:
            for i in range(3):
                await log.record(_event(i))
            first = log._remote.pid if log._remote is not None else None
            cutter.after, cutter.armed = True, True
            lost = _event(3)
            await append_again(log, lost, 10.0)
            assert cutter.cuts == 1
            assert log.landed(lost)  # in the log: not appended twice
            for i in range(4, 6):
                await append_again(log, _event(i), 10.0)
            assert log.writer_state == "ok"
            assert log._remote is not None and log._remote.pid not in (None, first)
        finally:
            log.stop()

    try:
        asyncio.run(go())
    finally:
        engine.dispose()
    assert _stored(server) == [0, 1, 2, 3, 4, 5]
    check = connect(server.url)
    try:
        result = verify_log(check, KEY)
    finally:
        check.dispose()
    assert result.ok and result.records == 6


def test_a_writer_outlives_its_database_restart(
    relay: tuple[PostgresServer, CommitCutter],
) -> None:
    """PostgreSQL restarts (a fast shutdown ends the writer's session) while the writer is
    idle: the next record fails (its connection is gone), the writer is replaced, and a
    record appended again is stored once. Before, every record failed from then on."""
    server, _ = relay
    engine = connect(server.url)
    log = AuditLog(engine, KEY)

    async def go() -> None:
        log.start(process=True)
        try:
            await log.record(_event(0))
            await asyncio.to_thread(server.restart)
            for i in range(1, 3):
                await append_again(log, _event(i), 10.0)
            assert log.writer_state == "ok"
        finally:
            log.stop()

    try:
        asyncio.run(go())
    finally:
        engine.dispose()
    assert _stored(server) == [0, 1, 2]
