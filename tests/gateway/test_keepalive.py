"""Idle kept-alive connections close after DONJON_KEEPALIVE_TIMEOUT_S (gateway/connections.py).

The idle timer is armed after every answer and cancelled by the next request's first
bytes; it runs on the loop's shared timers (deadlines.py), not one of the loop's own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import LiveNode
from shed_support import Connection, bare_node


@pytest.fixture
def idle_node(tmp_path: Path) -> Iterator[LiveNode]:
    """A node whose idle connections close after 2 s."""
    with bare_node(tmp_path, {"DONJON_KEEPALIVE_TIMEOUT_S": "2"}) as live:
        yield live


def test_an_idle_connection_is_closed_and_a_busy_one_is_not(idle_node: LiveNode) -> None:
    """After an answer, a connection that sends nothing more is closed by the node (within
    5 s of a 2 s timeout); one that sends its next request soon after is answered (the
    idle timer armed by the first answer was cancelled, not fired under it)."""
    idle, busy = Connection(idle_node), Connection(idle_node)
    try:
        for conn in (idle, busy):
            conn.sock.sendall(conn.healthz())
            assert conn.response()[0] == 200
        time.sleep(0.1)
        busy.sock.sendall(busy.healthz())
        assert busy.response()[0] == 200
        started = time.monotonic()
        assert idle.closed()
        assert time.monotonic() - started >= 1.5  # not before its time (2 s from its answer)
    finally:
        idle.sock.close()
        busy.sock.close()
