"""The audit outbox's drain (audit/changes.py) over a real SQLite file: which rows a node
takes, and when, with other node processes (real ones, killed for real) on the database."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from donjon.audit import AuditError, AuditEvent, AuditLog, verify_log
from donjon.audit.changes import AuditedChanges
from donjon.secret import Secret
from donjon.store import connect, create_schema
from donjon.store.audit_outbox import AuditOutbox, enlist
from donjon.store.tables import audit_outbox
from postgres_support import PostgresServer, postgres_server

__all__ = ["postgres_server"]  # the fixture, used by name below

KEY = Secret(bytes(range(32)))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = connect(f"sqlite:///{tmp_path / 'donjon.db'}")
    create_schema(e)
    yield e
    e.dispose()


def _db(engine: Engine) -> str:
    assert engine.url.database is not None
    return engine.url.database


def _sql(engine: Engine, statement: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(_db(engine)) as conn:
        return conn.execute(statement, args).fetchall()


def _put(engine: Engine, entry_id: str, created_at: float) -> None:
    """A row as an older node wrote it (no owner): only its id, record and time."""
    event = {"actor": "key:a", "action": "role.apply", "target": entry_id, "outcome": "ok"}
    with engine.begin() as conn:
        conn.execute(
            insert(audit_outbox).values(
                id=entry_id, event=json.dumps({**event, "detail": {}}), created_at=created_at
            )
        )


def _logged(engine: Engine) -> list[dict[str, Any]]:
    rows = _sql(engine, "SELECT record FROM audit_log ORDER BY seq")
    return [r for r in (json.loads(bytes(raw)) for (raw,) in rows) if r["action"] == "role.apply"]


def _outbox(engine: Engine) -> list[str]:
    return [r[0] for r in _sql(engine, "SELECT id FROM audit_outbox ORDER BY id")]


def _drain(engine: Engine, lease_s: float | None = None) -> int:
    """One drain by a node process (this one) with its own writer: the count appended.
    The lease is the default (300 s) unless given."""
    log = AuditLog(engine, KEY)
    lease = {} if lease_s is None else {"lease_s": lease_s}

    async def run() -> int:
        log.start()
        try:
            return await AuditedChanges(log, AuditOutbox(engine), **lease).recover()
        finally:
            log.stop()

    return asyncio.run(run())


#: A node process in the middle of a change: its row is committed, its append not made.
_MID_CHANGE = textwrap.dedent(
    """
    import asyncio, sys
    from donjon.audit import AuditEvent, AuditLog
    from donjon.audit.changes import AuditedChanges
    from donjon.secret import Secret
    from donjon.store import connect
    from donjon.store.audit_outbox import AuditOutbox, enlist

    async def main() -> None:
        engine = connect(sys.argv[1])
        changes = AuditedChanges(AuditLog(engine, Secret(bytes(range(32)))), AuditOutbox(engine))
        async with changes.change(AuditEvent("key:a", "role.apply", "role:mid", "ok", {})):
            with engine.begin() as conn:
                enlist(conn)
            print("committed", flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def _mid_change(engine: Engine) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _MID_CHANGE, str(engine.url)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "committed"
    return child


def test_a_live_node_process_rows_are_left_to_it(engine: Engine) -> None:
    """A drain leaves the row of a change another live process on this host is making;
    once that process is SIGKILLed, the next drain appends it at once, marked recovered."""
    child = _mid_change(engine)
    try:
        assert len(_outbox(engine)) == 1
        assert _drain(engine) == 0, "appended the record of a change still under way"
        assert len(_outbox(engine)) == 1 and _logged(engine) == []
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        assert child.stdout is not None
        child.stdout.close()
    assert _drain(engine) == 1  # its process is gone: no lease to wait
    (record,) = _logged(engine)
    assert record["target"] == "role:mid" and record["detail"]["recovered"] is True
    assert _outbox(engine) == []
    assert verify_log(engine, KEY).ok


def test_rows_no_one_is_known_to_have_left_wait_for_the_lease(engine: Engine) -> None:
    """A row whose writer is not known to be gone (an older node's, without an owner) is
    appended only once it is older than the lease; an older one at once."""
    now = time.time()
    _put(engine, "fresh", now)
    _put(engine, "old", now - 301)
    assert _drain(engine) == 1
    assert [r["target"] for r in _logged(engine)] == ["old"]
    assert _outbox(engine) == ["fresh"]
    time.sleep(0.6)
    assert _drain(engine, lease_s=0.5) == 1  # the same row, past a shorter lease
    assert [r["target"] for r in _logged(engine)] == ["old", "fresh"]


def test_a_claim_read_by_two_drains_goes_to_one(engine: Engine) -> None:
    """Two drains that read the same row: the first claim wins, the second sees it taken;
    a claim older than the lease is taken over, a fresh one by a live process is not."""
    _put(engine, "r", time.time() - 1000)
    outbox = AuditOutbox(engine)
    (read_by_a,) = outbox.waiting()
    (read_by_b,) = outbox.waiting()
    assert outbox.claim(read_by_a, "node-a", time.time())
    assert not outbox.claim(read_by_b, "node-b", time.time())
    (row,) = outbox.waiting()
    assert row.claimed_by == "node-a"
    # node-a (not a process this host can see die) claimed it just now: left to it ...
    assert _drain(engine, lease_s=300) == 0
    # ... until its claim is older than the lease.
    _sql(engine, "UPDATE audit_outbox SET claimed_at = ?", time.time() - 301)
    assert _drain(engine, lease_s=300) == 1
    assert _outbox(engine) == []


_CLAIMER = textwrap.dedent(
    """
    import sys, time
    from donjon.store import connect
    from donjon.store.audit_outbox import AuditOutbox

    outbox = AuditOutbox(connect(sys.argv[1]))
    rows = outbox.waiting()
    print("read", flush=True)
    sys.stdin.readline()  # both have read every row: go
    won = [r.id for r in rows if outbox.claim(r, sys.argv[2], time.time())]
    print(" ".join(won), flush=True)
    """
)


def _claim_race(engine: Engine) -> None:
    """Two node processes read the same 200 rows, then claim them at once: each row is
    claimed by exactly one of them."""
    ids = [f"r{i:03d}" for i in range(200)]
    for entry_id in ids:
        _put(engine, entry_id, time.time() - 1000)
    url = engine.url.render_as_string(hide_password=False)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, url, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("node-a", "node-b")
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "read"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    won = [set(child.communicate(timeout=60)[0].split()) for child in children]
    assert not won[0] & won[1], "a row claimed by both"
    assert won[0] | won[1] == set(ids)
    with engine.connect() as conn:
        claims = dict(conn.execute(select(audit_outbox.c.id, audit_outbox.c.claimed_by)).all())
    assert {i for i, by in claims.items() if by == "node-a"} == won[0]


@pytest.mark.slow  # two processes
def test_two_processes_claiming_at_once_each_take_every_row_once(engine: Engine) -> None:
    """Two node processes claiming the same rows at once in one SQLite file: each row is
    claimed by exactly one of them."""
    _claim_race(engine)


@pytest.mark.slow  # two processes and a PostgreSQL
def test_two_nodes_claiming_at_once_in_postgresql_each_take_every_row_once(
    postgres_server: PostgresServer,
) -> None:
    """The same race in PostgreSQL (several nodes share one there): one claim per row."""
    engine = connect(postgres_server.url)
    try:
        create_schema(engine)
        _claim_race(engine)
    finally:
        engine.dispose()


def test_a_node_drains_its_own_failed_append_at_once(engine: Engine, tmp_path: Path) -> None:
    """A change whose append failed (the writer refusing it) answers the error; the
    node's own drain appends its record at once, while a change still under way in the
    same process is never taken."""
    log = AuditLog(engine, KEY)
    outbox = AuditOutbox(engine)
    changes = AuditedChanges(log, outbox, append_retry_s=0.2)
    refuse = (
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_log WHEN instr(NEW.record,"
        " CAST('role:failed' AS BLOB)) > 0 BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )

    async def change(target: str, *, hold: asyncio.Event | None = None) -> None:
        async with changes.change(AuditEvent("key:a", "role.apply", target, "ok", {})):
            with engine.begin() as conn:
                enlist(conn)
            if hold is not None:
                await hold.wait()

    async def run() -> tuple[int, int]:
        log.start()
        try:
            _sql(engine, refuse)
            with pytest.raises(AuditError):
                await change("role:failed")
            _sql(engine, "DROP TRIGGER refuse")
            hold = asyncio.Event()
            running = asyncio.create_task(change("role:running", hold=hold))
            try:
                while len(_outbox(engine)) < 2:
                    await asyncio.sleep(0.01)
                first = await changes.drain()
            finally:  # the change ends (its record appended) before the writer stops
                hold.set()
                await running
            return first, await changes.drain()
        finally:
            log.stop()

    first, second = asyncio.run(run())
    assert (first, second) == (1, 0)
    logged = [(r["target"], r["detail"].get("recovered", False)) for r in _logged(engine)]
    assert logged == [("role:failed", True), ("role:running", False)]
    assert _outbox(engine) == []


def test_a_change_run_by_another_instance_in_the_process_is_never_drained(
    engine: Engine,
) -> None:
    """The node's drain leaves a change another AuditedChanges of the same process is
    making (a deploy runs through the deployments' own instance)."""
    log = AuditLog(engine, KEY)
    drainer = AuditedChanges(log, AuditOutbox(engine))
    deployer = AuditedChanges(log, AuditOutbox(engine))

    async def run() -> int:
        log.start()
        try:
            hold = asyncio.Event()

            async def deploy() -> None:
                event = AuditEvent("key:a", "role.apply", "role:deploying", "ok", {})
                async with deployer.change(event):
                    with engine.begin() as conn:
                        enlist(conn)
                    await hold.wait()

            running = asyncio.create_task(deploy())
            try:
                while not _outbox(engine):
                    await asyncio.sleep(0.01)
                return await drainer.drain()
            finally:  # the change ends (its record appended) before the writer stops
                hold.set()
                await running
        finally:
            log.stop()

    assert asyncio.run(run()) == 0, "drained a change under way"
    assert [(r["target"], r["detail"].get("recovered")) for r in _logged(engine)] == [
        ("role:deploying", None)
    ]


def test_a_row_appended_and_not_deleted_is_not_appended_again(engine: Engine) -> None:
    """A drain whose append succeeds and whose delete fails (the store's disk full, the
    log's not) appends that record once: its next rounds only delete the row."""
    _put(engine, "role:kept", time.time() - 1_000)  # an older node's, past the lease
    log = AuditLog(engine, KEY)
    changes = AuditedChanges(log, AuditOutbox(engine))
    keep = (
        "CREATE TRIGGER keep BEFORE DELETE ON audit_outbox"
        " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )

    async def run() -> list[int]:
        log.start()
        try:
            _sql(engine, keep)
            for _ in range(3):
                with pytest.raises(Exception, match="disk is full"):
                    await changes.drain()
            _sql(engine, "DROP TRIGGER keep")
            return [await changes.drain(), await changes.drain()]
        finally:
            log.stop()

    assert asyncio.run(run()) == [0, 0]
    logged = [(r["target"], r["detail"].get("recovered", False)) for r in _logged(engine)]
    assert logged == [("role:kept", True)]
    assert _outbox(engine) == []
