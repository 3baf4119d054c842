"""Idle kept-alive connections close after DONJON_KEEPALIVE_TIMEOUT_S (gateway/connections.py).

A connection is idle from an answer until the next request's first bytes; one alarm a
connection, on the loop's shared timers (deadlines.py), reads when it became idle and
closes it a whole timeout after that, or waits on.
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


def test_the_idle_time_counts_from_the_last_answer_across_the_alarms(
    idle_node: LiveNode,
) -> None:
    """Each connection's one idle alarm is armed by its first answer. `later` is idle
    since a second answer when it fires (it waits on for the rest), `busy` has a request
    half sent (it leaves it open and the next answer arms another): each connection closes
    a whole timeout after its last answer, never sooner, and does close."""
    later, busy = Connection(idle_node), Connection(idle_node)
    try:
        for conn in (later, busy):
            conn.sock.sendall(conn.healthz())
            assert conn.response()[0] == 200  # the alarms: about 2 s from here
        time.sleep(1.2)
        later.sock.sendall(later.healthz())
        assert later.response()[0] == 200
        later_at = time.monotonic()
        time.sleep(0.3)
        head = busy.healthz()
        busy.sock.sendall(head[:10])  # still half sent when its alarm fires
        time.sleep(1.0)
        busy.sock.sendall(head[10:])
        assert busy.response()[0] == 200
        busy_at = time.monotonic()
        assert later.closed()
        assert time.monotonic() - later_at >= 1.5  # 2 s from its last answer
        assert busy.closed()
        assert time.monotonic() - busy_at >= 1.5
    finally:
        later.sock.close()
        busy.sock.close()
