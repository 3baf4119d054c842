"""A node's PostgreSQL lock (store/node_lock.py) outlives the connection that held it.

A session advisory lock goes with its connection: a PostgreSQL restarted under the node
(or a server that ends the connection) released it, and a second node then served the
same database beside the first, whose deploys and calls answered 500. The node watches
the connection, takes the lock again once the server answers, and stops itself if
another node took it first.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from donjon.store.node_lock import (
    DATABASE_LOCK_KEY,
    DatabaseLock,
    NodeBusy,
    hold_database_lock,
)
from postgres_support import PostgresServer, postgres_server

__all__ = ["postgres_server"]  # the fixture, used by name

pytestmark = pytest.mark.slow  # a PostgreSQL server of its own, restarted

_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND pid <> pg_backend_pid()"
)


def _hold(server: PostgresServer, data_dir: Path, lost: list[bool]) -> DatabaseLock:
    held = hold_database_lock(
        server.url, None, data_dir, "the test's", on_lost=lambda: lost.append(True), watch_s=0.2
    )
    assert held is not None
    return held


def _until(what: str, done: object) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if callable(done) and done():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} within 20 s")


def _held_by_others(server: PostgresServer) -> int:
    with server.connect() as conn:
        row = conn.execute(_HELD).fetchone()
    return int(row[0]) if row else 0


def test_a_lock_lost_to_a_postgresql_restart_is_taken_again(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """After the restart the node holds its database again, and a second node is refused."""
    lost: list[bool] = []
    held = _hold(postgres_server, tmp_path, lost)
    try:
        postgres_server.restart()
        _until("the lock was not taken again", lambda: _held_by_others(postgres_server) == 1)
        with pytest.raises(NodeBusy, match="already served by another donjon node"):
            hold_database_lock(postgres_server.url, None, tmp_path / "copy", "the test's")
        assert lost == []
    finally:
        held.release()
    assert _held_by_others(postgres_server) == 0


def test_a_node_whose_lost_lock_another_node_took_is_told_to_stop(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """A second node that took the lock first (between the restart and the first node's
    look) keeps it, and the first is told to stop (`on_lost`: serve stops itself)."""
    lost: list[bool] = []
    held = _hold(postgres_server, tmp_path, lost)
    try:
        with postgres_server.connect() as second:  # the second node's session
            second.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted"
            )
            take = "SELECT pg_try_advisory_lock(%s)"
            _until(
                "the second did not take the lock",
                lambda: (second.execute(take, (DATABASE_LOCK_KEY,)).fetchone() or [False])[0],
            )
            _until("the first node was not told to stop", lambda: lost == [True])
    finally:
        held.release()


def test_two_inits_of_two_data_dirs_at_once_leave_one_node_in_the_database(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """Both found the (empty) database free of keys, and both wrote an admin key to it;
    the second failed halfway ("the audit log's head is not signed by this node's audit
    signing key"). Now one init at a time: the other is refused before it makes anything."""
    import subprocess
    import sys

    from donjon.store import connect, create_schema
    from harness import donjon_env

    engine = connect(postgres_server.url)
    try:
        create_schema(engine)  # an empty database (as `donjon db upgrade` leaves one)
    finally:
        engine.dispose()
    inits = [
        subprocess.Popen(
            [sys.executable, "-m", "donjon.cli", "init"],
            env={**donjon_env(tmp_path / name), "DONJON_DATABASE_URL": postgres_server.url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("one", "two")
    ]
    said = [init.communicate(timeout=120) for init in inits]
    codes = sorted(init.returncode for init in inits)
    assert codes[0] == 0 and codes[1] != 0, said
    refused = next(
        name for name, init in zip(("one", "two"), inits, strict=True) if init.returncode
    )
    assert any("already holds another data dir's node" in err for _, err in said), said
    assert not (tmp_path / refused / "master.key").exists()
    with postgres_server.connect() as conn:
        assert (conn.execute("SELECT count(*) FROM api_keys").fetchone() or [0])[0] == 1


def test_a_lock_dropped_on_a_live_connection_is_noticed(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """A session that no longer holds the lock though its connection answers (a pooler's
    `DISCARD ALL` between clients, or transaction pooling handing the locked session to
    someone else) is a lost lock: before, the watch only ran `SELECT 1`, so a second node
    took the database and both served it for as long as they ran."""
    lost: list[bool] = []
    held = _hold(postgres_server, tmp_path, lost)
    try:
        # What a pooler's reset does to the session, on the node's own connection.
        connection = held._connection
        assert connection is not None
        connection.execute(text("SELECT pg_advisory_unlock_all()"))
        connection.commit()
        with postgres_server.connect() as second:  # the second node's session
            take = "SELECT pg_try_advisory_lock(%s)"
            assert (second.execute(take, (DATABASE_LOCK_KEY,)).fetchone() or [False])[0]
            _until("the first node was not told to stop", lambda: lost == [True])
    finally:
        held.release()
