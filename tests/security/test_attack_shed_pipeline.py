"""Shed and served requests mixed on one kept-alive connection, pipelined in one write.

An early shed answers from the request head, inside the parser's callbacks, while the
rest of the chunk (the shed's body, the next requests) is still being parsed
(gateway/connections.py `_shed_early`). Each request must get exactly one answer, in
order, and a request behind a shed must be served as if it came alone: found by a
review of the shed's reused cycle (helper-126), which sent such mixes on raw TLS
connections to a real node.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import LiveNode
from shed_support import (
    MANIFEST,
    SHEDDING_ENV,
    SLOW,
    Connection,
    metric,
    saturate,
    slow_node,
)


@pytest.fixture
def mixed_node(tmp_path: Path) -> Iterator[LiveNode]:
    """`slow` (concurrency 1, one call may wait) and `fast` (concurrency 4) on a node whose
    idle connections close after 2 s; the loop's lag sheds nothing."""
    with slow_node(
        tmp_path,
        "slow",
        {**SHEDDING_ENV, "DONJON_KEEPALIVE_TIMEOUT_S": "2"},
    ) as live:
        fn = tmp_path / "fast"
        fn.mkdir(mode=0o755)
        (fn / "main.py").write_text(SLOW)
        manifest = MANIFEST.format(name="fast").replace("concurrency: 1", "concurrency: 4")
        (fn / "donjon.yaml").write_text(manifest)
        fn.chmod(0o755)
        live.deploy(fn)
        yield live


def _served(threads: list[Any]) -> None:
    for thread in threads:
        thread.join(60)


def test_a_call_pipelined_behind_a_shed_is_answered_past_the_keepalive_timeout(
    mixed_node: LiveNode,
) -> None:
    """A shed and, in the same write, a call that runs 4 s, past the 2 s keep-alive
    timeout: the call's answer arrives. Before, the shed's completed response armed the
    idle timer while the chunk was still parsed, and it closed the connection under the
    call, which ran on with nobody to answer (a client would retry it)."""
    node = mixed_node
    answers: list[Any] = []
    threads = saturate(node, "slow", answers)
    conn = Connection(node)
    conn.sock.sendall(conn.invoke("slow", 0) + conn.invoke("fast", 4))
    assert conn.response()[0] == 503
    status, _, body = conn.response()
    assert status == 200, body
    assert json.loads(body) == {"slept": 4}
    conn.sock.close()
    _served(threads)


def test_shed_and_served_requests_in_one_write_answer_in_order(mixed_node: LiveNode) -> None:
    """shed, healthz, shed, served, shed, healthz in one write: six answers in that order,
    each 503 a whole problem document, nothing more; the overload counter rises by the
    503s the early shed gave (the third shed, pipelined behind a request the app serves,
    is shed by the app's `admit`: counted the same)."""
    node = mixed_node
    answers: list[Any] = []
    threads = saturate(node, "slow", answers)
    before = metric(node, "donjon_rate_limited_total", function="slow", limit="overload")
    conn = Connection(node)
    conn.sock.sendall(
        conn.invoke("slow", 0)
        + conn.healthz()
        + conn.invoke("slow", 0)
        + conn.invoke("fast", 0)
        + conn.invoke("slow", 0)
        + conn.healthz()
    )
    got = [conn.response() for _ in range(6)]
    assert [status for status, _, _ in got] == [503, 200, 503, 200, 503, 200]
    for status, fields, body in got:
        if status == 503:
            doc = json.loads(body)
            assert doc["request_id"] == fields[b"x-request-id"].decode()
            assert int(fields[b"retry-after"]) >= 1
    assert json.loads(got[3][2]) == {"slept": 0}
    conn.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        conn._more()
    assert conn.buf == b""
    after = metric(node, "donjon_rate_limited_total", function="slow", limit="overload")
    assert after - before == 3
    conn.sock.close()
    _served(threads)


def test_a_shed_http10_call_closes_its_connection(mixed_node: LiveNode) -> None:
    """An HTTP/1.0 call asking to be kept alive and shed from its head: the 503 says
    `connection: close` and the connection closes, as the app's own answer to it does
    (an HTTP/1.0 client reads to the end of the connection)."""
    node = mixed_node
    answers: list[Any] = []
    threads = saturate(node, "slow", answers)
    conn = Connection(node)
    conn.sock.sendall(conn.invoke("slow", 0, version="1.0", extra="connection: keep-alive\r\n"))
    status, fields, _ = conn.response()
    assert status == 503
    assert fields.get(b"connection") == b"close"
    assert conn.closed()
    conn.sock.close()
    _served(threads)
