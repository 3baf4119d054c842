"""Heads that may not invoke a function cannot shed the calls of a caller who may.

The early shed counts the invoke heads it lets through until their tasks reach `admit`
(gateway/early_shed.py): heads parsed in one turn of the loop all queue in the next.
Before, it counted every head, with a credential or not. A few heads without one, read
in the same turn as a keyed caller's, made its call look queued behind them, and it was
shed with 503 and Retry-After, though the app answers those heads 401 or 403 and they
never queue: anyone who can reach the node could refuse a function to its callers.
Found reviewing the head's count of calls ahead (docs/performance.md, the fourteenth
round).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import struct
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from donjon.gateway.early_shed import _DETAIL
from harness import LiveNode
from shed_support import SHEDDING_ENV, Connection, slow_node
from utc_day import clear_of_utc_midnight

ROUNDS = 3


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[LiveNode]:
    """`slow` (concurrency 1, one call may wait) called once: the pool has its slot."""
    with slow_node(tmp_path, "slow", SHEDDING_ENV) as live:
        assert live.invoke("slow", {"sleep": 0}).status_code == 200
        yield live


def _delivered(conns: list[Connection]) -> None:
    """Wait until every byte sent is in the node's socket buffers: acknowledged by its
    kernel, which it does while the node is stopped (10 s at most)."""
    deadline = time.monotonic() + 10
    while any(_unacknowledged(conn) for conn in conns):
        assert time.monotonic() < deadline, "the node's kernel did not take the requests"
        time.sleep(0.01)


def _unacknowledged(conn: Connection) -> int:
    """Bytes of `conn` sent and not yet acknowledged by the peer (TIOCOUTQ)."""
    (queued,) = struct.unpack("i", fcntl.ioctl(conn.sock.fileno(), termios.TIOCOUTQ, bytes(4)))
    return int(queued)


def _in_one_turn(node: LiveNode, auths: list[str | None]) -> list[tuple[int, bytes]]:
    """One invoke of `slow` per entry of `auths` (its Authorization value: "" none, None
    the admin key), each on its own connection, all read by the node in one turn of its
    loop: it is stopped while they are sent. Each one's status and body, in that order."""
    conns = [Connection(node) for _ in auths]
    os.kill(node.proc.pid, signal.SIGSTOP)
    try:
        for conn, auth in zip(conns, auths, strict=True):
            conn.sock.sendall(conn.invoke("slow", 0, auth=auth))
        _delivered(conns)
    finally:
        os.kill(node.proc.pid, signal.SIGCONT)
    answers = [conn.response() for conn in conns]
    for conn in conns:
        conn.sock.close()
    return [(status, body) for status, _, body in answers]


def test_heads_without_the_grant_do_not_shed_a_keyed_call_read_with_them(
    slow: LiveNode,
) -> None:
    """No credentials, an unknown key, a JWT-shaped token and a key without the invoke
    grant, then the admin's call, in one turn: the four get 401 or 403, the call is
    served (`slow` is idle). Before, the four counted as queued ahead and it got 503."""
    reader = slow.create_key("heads-reader", "metrics")["key"]
    auths: list[str | None] = ["", "Bearer dj_0123456789abcdef"]
    auths += ["Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln", f"Bearer {reader}", None]
    for _ in range(ROUNDS):
        statuses = [status for status, _ in _in_one_turn(slow, auths)]
        assert statuses == [401, 401, 401, 403, 200]


def test_heads_with_the_grant_still_count_as_queued(slow: LiveNode) -> None:
    """Five admin calls in one turn: one takes the slot, one the place to wait, and the
    three behind them are shed from their heads (not at `admit`, whose 503 says why)."""
    answers = sorted(_in_one_turn(slow, [None] * 5))
    assert [status for status, _ in answers] == [200, 200, 503, 503, 503]
    for _, body in answers[2:]:
        assert json.loads(body)["detail"] == _DETAIL


@pytest.mark.parametrize("limit", ["rate", "quota"])
def test_heads_of_a_caller_over_its_own_limit_do_not_shed_another_callers_call(
    slow: LiveNode, limit: str
) -> None:
    """A key allowed one call (a minute, or a day by its own quota), after its 429: four
    of its heads, then the admin's call, in one turn: the four get 429, the call is
    served. Before, the key's heads counted as queued (it may invoke `slow`)."""
    limits = {"rate": "1/minute", "burst": 1} if limit == "rate" else None
    over = slow.create_key(f"heads-over-{limit}", "invoker", ["slow"], limits)
    if limit == "quota":
        clear_of_utc_midnight()
        with slow.client() as c:
            r = c.put(f"/v1/quotas/key:{over['id']}", json={"invocations": 1})
            assert r.status_code == 201, r.text
    assert slow.invoke("slow", {"sleep": 0}, key=over["key"]).status_code == 200
    assert slow.invoke("slow", {"sleep": 0}, key=over["key"]).status_code == 429
    auths: list[str | None] = [f"Bearer {over['key']}"] * 4 + [None]
    statuses = [status for status, _ in _in_one_turn(slow, auths)]
    assert statuses == [429, 429, 429, 429, 200]
