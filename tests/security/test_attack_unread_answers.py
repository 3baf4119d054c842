"""A client that asks for large answers and reads none of them (a slow-read attack).

uvicorn's flow control holds a response's next piece while the client reads nothing
(gateway/body_chunks.py), and nothing ended that wait: each such connection kept its
answer (up to 6 MiB, and about 7.7 MiB of the node's memory) for as long as the client
liked, 64 connections an address. A node of its own: a 2 s body timeout (the stall a
connection's answer may make too), 8 connections an address. The answers are 6 MB, more
than Linux's largest default socket send buffer (4 MiB, net.ipv4.tcp_wmem), so what
the client does not read stays in the node.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator

import httpx
import pytest

from harness import LiveNode, fresh_source, start_node
from sec_support import string_function

PER_CLIENT = 8
#: The answer's JSON string: 6 MB, under the node's 6 MiB response limit.
ANSWER = 6_000_000
#: What the slow reader reads: about 15 s at its pace, several body timeouts.
SLOW_READ = 600_000
#: A generous bound for what the node must end on its own (its timer here is 2 s).
CLOSE_BOUND_S = 120


@pytest.fixture(scope="module")
def slow_read(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node with a 2 s body timeout and 8 connections per address."""
    root = tmp_path_factory.mktemp("slow-read")
    live = start_node(
        root / "node",
        {
            "DONJON_BODY_TIMEOUT_S": "2",
            "DONJON_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
        },
    )
    try:
        live.deploy(string_function(root, "sr-big"))
        live.deploy(string_function(root, "sr-big-warm", "isolation: warm\n"))
        yield live
    finally:
        live.stop()


def _ask(node: LiveNode, source: str, fn: str, *, small_buffer: bool = True) -> ssl.SSLSocket:
    """A connection from `source` that asks `fn` for a 6 MB answer (with a 4 KiB receive
    buffer: the answer stays in the node while the client reads none of it)."""
    port = int(node.url.rsplit(":", 1)[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0))
    if small_buffer:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s = node.tls.wrap_socket(raw, server_hostname="127.0.0.1")
    event = b'{"n": %d}' % ANSWER
    s.sendall(
        b"POST /v1/functions/" + fn.encode() + b"/invoke HTTP/1.1\r\nHost: localhost\r\n"
        b"Authorization: Bearer " + node.admin_key.encode() + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % len(event) + event
    )
    return s


def _all_served(node: LiveNode, source: str) -> bool:
    """Whether `source` can hold `PER_CLIENT` connections at once, each served: none of
    its earlier connections is left open."""
    with contextlib.ExitStack() as stack:
        try:
            for _ in range(PER_CLIENT):
                c = stack.enter_context(node.client(source=source))
                if c.get("/healthz").status_code != 200:
                    return False
        except httpx.HTTPError:
            return False
    return True


def _read_all(s: ssl.SSLSocket) -> bytes:
    got = b""
    s.settimeout(30)
    with contextlib.suppress(OSError):
        while chunk := s.recv(65536):
            got += chunk
    return got


@pytest.mark.parametrize("fn", ["sr-big", "sr-big-warm"])
def test_answers_a_client_stops_reading_end_its_connections(slow_read: LiveNode, fn: str) -> None:
    """An address fills its 8 connections with 6 MB answers and reads none of them: the
    node ends every one of them once its answer makes no progress for the body timeout,
    and the address may hold its 8 connections again."""
    source = fresh_source()
    held = [_ask(slow_read, source, fn) for _ in range(PER_CLIENT)]
    try:
        deadline = time.monotonic() + CLOSE_BOUND_S
        while not _all_served(slow_read, source):
            assert time.monotonic() < deadline, "the unread answers' connections stayed open"
            time.sleep(0.5)
    finally:
        for s in held:
            s.close()


def test_a_client_reading_its_answer_gets_it_whole(slow_read: LiveNode) -> None:
    """The same 6 MB answer, read as it comes: whole."""
    s = _ask(slow_read, fresh_source(), "sr-big-warm", small_buffer=False)
    try:
        got = _read_all(s)
    finally:
        s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert len(body) == ANSWER + 2, len(body)


def test_a_client_reading_slowly_keeps_its_connection(slow_read: LiveNode) -> None:
    """A 4 KiB receive buffer read as it fills (tens of KB a second on loopback): the
    answer keeps coming over many body timeouts, never cut for a stall."""
    s = _ask(slow_read, fresh_source(), "sr-big-warm")
    got = 0
    try:
        s.settimeout(30)
        while got < SLOW_READ:
            chunk = s.recv(65536)
            assert chunk, f"the connection ended after {got} bytes"
            got += len(chunk)
    finally:
        s.close()
