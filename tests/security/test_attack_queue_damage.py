"""A queued event whose sealed bytes were edited in the database file (vault/queueseal.py):
it cannot be opened, and it must not take the events claimed with it down too."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from async_support import bundle, invoke_async, wait_for
from harness import start_node

#: Fails its first attempt, so that its event waits in the queue for the next.
FAILS_FIRST = (
    "def handler(event, context):\n"
    "    if context.cloudevent['donjonattempt'] == '1':\n"
    "        raise RuntimeError('first attempt fails')\n"
    "    return {'ran': event['n']}\n"
)


@pytest.fixture(scope="session", autouse=True)
def hostile_warm_copies() -> None:
    """Overrides tests/security/conftest.py's: this module starts a node of its own."""


def test_a_damaged_queued_event_does_not_hold_back_the_ones_claimed_with_it(
    tmp_path: Path,
) -> None:
    """Two events wait for their retry; one's sealed bytes are edited while the node is
    stopped, and both are due when it starts again (one claim takes both): the other
    runs, the damaged one is dead-lettered saying why, and the DLQ still lists."""
    node = start_node(tmp_path / "data")
    try:
        retry = "retry: {attempts: 3, backoff_s: 600, max_age_s: 3600}\n"
        node.deploy(bundle(tmp_path, "q-damage", FAILS_FIRST, retry))
        ids = [invoke_async(node, "q-damage", {"n": n}).json()["invocation_id"] for n in (1, 2)]
        for invocation_id in ids:
            assert wait_for(node, invocation_id, ("failed",))["attempts"] == 1
        node.stop()
        with sqlite3.connect(node.data_dir / "donjon.db") as db:
            query = "SELECT event FROM invocations WHERE id = ?"
            (event,) = db.execute(query, (ids[0],)).fetchone()
            damaged = event[:-1] + bytes([event[-1] ^ 1])
            db.execute("UPDATE invocations SET event = ? WHERE id = ?", (damaged, ids[0]))
            db.execute("UPDATE invocations SET next_at = 0")
        node.serve_again()
        assert wait_for(node, ids[1])["result"] == {"ran": 2}
        dead = wait_for(node, ids[0])
        assert dead["status"] == "dead" and dead["error"]["type"] == "Unreadable", dead
        with node.client() as c:
            listed = c.get("/v1/dlq")
        assert listed.status_code == 200 and ids[0] in listed.text, listed.text
    finally:
        node.stop()
