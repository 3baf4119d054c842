"""A node whose PostgreSQL lock was taken by another node writes nothing more there.

Several nodes sharing a database are not supported: a node holds its database by a
session advisory lock (store/node_lock.py), and a lock lost with its connection (the
server restarted, `pg_terminate_backend`) that another node took first tells the node
to stop. Until that node is gone, two nodes serve one database: two audit writers on
one log, a key revoked on one still good on the other. The attack: end the node's lock
connection and take the lock, as a second node starting in that window does, then read
what the first node still wrote to the database after it was told to stop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from donjon.store.node_lock import DATABASE_LOCK_KEY
from harness import EXAMPLES, FUNCTIONS, LiveNode, donjon_env, run_cli, serve_initialised
from postgres_support import PostgresServer, postgres_server

__all__ = ["postgres_server"]  # the fixture, used by name

pytestmark = pytest.mark.slow  # a node of its own, and a PostgreSQL

_TOLD = "another donjon node took this node's database"
#: A record stamped this long after the node was told is one it should not have written.
_MARGIN_S = 0.25


def _told_at(log: Path) -> float | None:
    """When the node logged that its database was taken (a Unix time), if it did."""
    for line in log.read_text().splitlines():
        if _TOLD in line:
            return dt.datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
    return None


def _stamped_after(conn: psycopg.Connection[Any], moment: float) -> list[str]:
    """The actions of the log's records its writer stamped after `moment`."""
    late: list[str] = []
    for (record,) in conn.execute("SELECT record FROM audit_log ORDER BY seq"):
        entry = json.loads(bytes(record))
        if entry["ts"] > moment:
            late.append(f"{entry['action']} {entry['target']}")
    return late


def _slow_call(node: LiveNode) -> None:
    with contextlib.suppress(httpx.HTTPError):
        node.invoke("probe", {"op": "sleep", "s": 1.5})


def test_a_node_told_its_database_was_taken_appends_nothing_more_to_its_log(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """Before: the node stopped as SIGTERM stops it, and its orderly shutdown (the
    `node.stop` record, the outcomes of calls in flight, denial counts) was appended to
    a log another node now held."""
    database = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
    own = tmp_path / "own"
    done = run_cli({**donjon_env(own), "DONJON_DATABASE_URL": database}, "init", "--json")
    admin_key = str(json.loads(done.stdout)["admin_key"])
    node = serve_initialised(own, admin_key, {"DONJON_DATABASE_URL": database})
    try:
        node.deploy(EXAMPLES / "hello")
        node.deploy(FUNCTIONS / "probe")
        assert node.invoke("hello", {"name": "a"}).status_code == 200
        with node.client(key="dj_0123456789abcdef_wrong") as c:  # counted, written later
            assert c.post("/v1/functions/hello/invoke", json={}).status_code == 401
        with postgres_server.connect() as second:  # the second node's session
            second.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
            )
            taken = False
            deadline = time.monotonic() + 20
            while not taken and time.monotonic() < deadline:
                row = second.execute("SELECT pg_try_advisory_lock(%s)", (DATABASE_LOCK_KEY,))
                taken = bool((row.fetchone() or [False])[0])
                time.sleep(0.05)
            assert taken, "the second session did not take the lock"
            log = own / "serve.log"
            calls: list[threading.Thread] = []
            deadline = time.monotonic() + 20
            while _told_at(log) is None and time.monotonic() < deadline:
                # Calls kept in flight, as a load balancer sends them, until it is told.
                call = threading.Thread(target=_slow_call, args=(node,), daemon=True)
                call.start()
                calls.append(call)
                time.sleep(0.3)
            told = _told_at(log)
            assert told is not None, log.read_text()
            node.proc.wait(60)
            # Its writer's last commit may end a few milliseconds after the line is logged.
            late = _stamped_after(second, told + _MARGIN_S)
        assert late == [], f"appended after the node was told: {late}"
    finally:
        node.stop()
