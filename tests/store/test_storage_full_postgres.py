"""A full disk under PostgreSQL: what `storage_full` and the audit writer make of it.

The node's SQLite file on a full disk is attacked in tests/security/test_attack_disk_full.py;
the store's other database, PostgreSQL (the audit log, the queue and the outbox run on it:
tests/audit/test_outbox_drain.py, tests/triggers/test_queue_postgres.py), reports a full
disk with its own error, SQLSTATE 53100 (`disk_full`), which `storage_full` reads through
SQLAlchemy's wrapper. Here a real PostgreSQL runs with its cluster on a small tmpfs of
its own, a file of the test's fills the tmpfs, and an insert that needs a new page fails
(PostgreSQL's relation extension: an ERROR, not a crash; the WAL segment it writes into
was made at start). Mounting needs root: where it is refused, the tests skip and say so.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from disk_support import fill_with
from donjon.audit import AuditEvent, AuditLog, verify_log
from donjon.audit.errors import AuditStorageFull
from donjon.secret import Secret
from donjon.store import connect, create_schema, storage_full
from postgres_support import PostgresServer

pytestmark = pytest.mark.slow  # a PostgreSQL of its own, on a filesystem of its own

KEY = Secret(bytes(range(32)))
#: The cluster (about 40 MiB after initdb, most of it WAL) and some room to fill.
SIZE_MIB = 96


@pytest.fixture
def small_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL whose whole directory (cluster, log) is a tmpfs of SIZE_MIB."""
    server = PostgresServer()
    owner = os.stat(server.directory)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o",  # noqa: S607 - the system's mount, by PATH
         f"size={SIZE_MIB}m,mode=0700,uid={owner.st_uid},gid={owner.st_gid}",
         "tmpfs", str(server.directory)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        shutil.rmtree(server.directory, ignore_errors=True)
        pytest.skip(f"cannot mount a tmpfs for PostgreSQL's cluster: {done.stderr.strip()}")
    try:
        server.start()
        yield server
    finally:
        server.stop()  # its files go; the mount point stays until unmounted
        subprocess.run(["umount", "-l", str(server.directory)], check=False)  # noqa: S607 - the system's umount
        shutil.rmtree(server.directory, ignore_errors=True)


def _insert_rows(engine: Engine, rows: int) -> None:
    with engine.begin() as conn:
        for _ in range(rows):
            conn.execute(text("INSERT INTO fill VALUES (repeat('x', 1900))"))


def test_a_full_disk_is_told_from_other_failures_on_postgresql(
    small_postgres: PostgresServer,
) -> None:
    """An insert that needs a new page on a full disk fails with 53100, which
    `storage_full` finds through SQLAlchemy's error; other failures are not called full;
    once the file is gone the same insert succeeds."""
    engine = connect(small_postgres.url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE fill (b text)"))
        filler = fill_with(small_postgres.directory / "filler")
        with pytest.raises(DBAPIError) as caught:
            _insert_rows(engine, 2000)  # about 4 MiB: pages past what the table has
        assert getattr(caught.value.orig, "sqlstate", None) == "53100", caught.value
        assert storage_full(caught.value)
        # Not every error is a full disk.
        with pytest.raises(SQLAlchemyError) as other, engine.begin() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))
        assert not storage_full(other.value)
        filler.unlink()
        _insert_rows(engine, 2000)
    finally:
        engine.dispose()


def test_the_audit_writer_on_postgresql_says_the_storage_is_full_and_recovers(
    small_postgres: PostgresServer,
) -> None:
    """The writer process appending to PostgreSQL on a full disk fails its records with
    AuditStorageFull (the node's 503), stays up, and appends again once space is freed;
    the log verifies, with no record of the failed appends."""
    engine = connect(small_postgres.url)
    create_schema(engine)
    log = AuditLog(engine, KEY)

    def event(i: int) -> AuditEvent:
        return AuditEvent("key:a", "function.invoke", "f@1", "ok", {"i": i, "pad": "x" * 1500})

    async def go() -> tuple[int, int]:
        log.start(process=True)
        try:
            await log.record(event(0))
            filler = fill_with(small_postgres.directory / "filler")
            refused = 0
            for i in range(1, 4000):  # until a record needs a page the disk cannot give
                try:
                    await log.record(event(i))
                except AuditStorageFull:
                    refused = i
                    break
            assert refused, "the disk never filled: the bound is too small"
            assert log.writer_state == "ok"  # not a death: no restart
            filler.unlink()
            await log.record(event(99_999))
            return refused, log.size
        finally:
            log.stop()

    refused, size = asyncio.run(go())
    with engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("SELECT record FROM audit_log ORDER BY seq"))]
    assert len(stored) == size == refused + 1  # records 0 .. refused-1, then 99,999
    assert json.loads(stored[-1])["detail"]["i"] == 99_999
    assert verify_log(engine, KEY).ok
    engine.dispose()
