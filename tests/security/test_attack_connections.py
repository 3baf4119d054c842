"""Connections and request heads: slow, greedy and lying clients leave the node serving others.

Attackers connect from other loopback addresses (127.0.0.2 and up) so that the
per-address cap does not also apply to the checks made from 127.0.0.1.
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import ssl
import time
from collections.abc import Iterator, Sequence

import httpx
import pytest

from harness import FUNCTIONS, LiveNode, fresh_source, start_node
from sec_support import assert_problem, audit_records

#: Generous bounds for what the server must do on its own (deadlines are 2-10 s).
CLOSE_BOUND_S = 120
SPOOFED = "203.0.113.7"


@pytest.fixture(scope="module")
def guarded_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node with short TLS and body deadlines, room for many connections, 127.0.0.1 as proxy."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if want < 4096:
        pytest.skip(f"needs 4096 open files (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))  # the node inherits it
    live = start_node(
        tmp_path_factory.mktemp("guarded"),
        {
            "DONJON_TRUSTED_PROXIES": "127.0.0.1/32",
            "DONJON_MAX_CONNECTIONS": "3000",
            "DONJON_TLS_HANDSHAKE_TIMEOUT_S": "2",
            "DONJON_BODY_TIMEOUT_S": "2",
            "DONJON_HEAD_TIMEOUT_S": "60",  # connections held open on purpose stay open
        },
    )
    try:
        live.deploy(FUNCTIONS / "probe")
        yield live
    finally:
        live.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _port(node: LiveNode) -> int:
    return int(node.url.rsplit(":", 1)[1])


def _tcp(node: LiveNode, source: str) -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", _port(node)), timeout=60, source_address=(source, 0)
    )


def _tls(node: LiveNode, context: ssl.SSLContext, source: str) -> ssl.SSLSocket:
    return context.wrap_socket(_tcp(node, source), server_hostname="127.0.0.1")


def _half_sent_heads(node: LiveNode, sources: list[str], each: int) -> list[socket.socket]:
    """`each` connections from every source address, each with a request head cut short."""
    context = node.tls
    held: list[socket.socket] = []
    for source in sources:
        for _ in range(each):
            try:
                s = _tls(node, context, source)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            except OSError:  # refused over a cap: that is the server closing it
                continue
            held.append(s)
    return held


def _wait_closed(socks: list[socket.socket], bound_s: float) -> int:
    """How many of `socks` the server closed (EOF or reset) within `bound_s`."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    open_count = len(socks)
    deadline = time.monotonic() + bound_s
    while open_count and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            try:
                if conn.recv(4096):
                    continue  # a 408 before the close
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            except OSError:
                pass
            sel.unregister(conn)
            open_count -= 1
    sel.close()
    return len(socks) - open_count


def _close_all(socks: Sequence[socket.socket]) -> None:
    for s in socks:
        s.close()


def _healthy(node: LiveNode) -> tuple[int, int]:
    """Status of /healthz and of an invoke of the probe, asked from 127.0.0.1."""
    with node.client() as c:
        health = c.get("/healthz").status_code
        invoke = c.post("/v1/functions/probe/invoke", content=b"{}").status_code
    return health, invoke


def _read_reply(s: ssl.SSLSocket) -> bytes:
    s.settimeout(60)
    reply = b""
    try:
        while chunk := s.recv(4096):
            reply += chunk
    except OSError:
        pass
    return reply


def test_half_sent_heads_are_closed_by_the_server(node: LiveNode) -> None:
    """300 heads cut short from one address: others are served, and the server closes all 300."""
    held = _half_sent_heads(node, ["127.0.0.2"], 300)
    try:
        assert _healthy(node) == (200, 200)
        closed = _wait_closed(held, CLOSE_BOUND_S)
        assert closed == len(held), f"{len(held) - closed} half-sent heads still open"
        assert _healthy(node) == (200, 200)
    finally:
        _close_all(held)


def test_half_sent_heads_from_many_addresses_leave_capacity_to_others(
    guarded_node: LiveNode,
) -> None:
    """1,100 heads cut short from 20 addresses do not count as requests: /healthz and invoke 200."""
    sources = [f"127.0.0.{i}" for i in range(10, 30)]
    held = _half_sent_heads(guarded_node, sources, 55)
    try:
        assert len(held) == 1100  # under every cap: all were accepted
        assert _healthy(guarded_node) == (200, 200)
    finally:
        _close_all(held)


def test_tls_handshake_never_finished_is_closed(guarded_node: LiveNode) -> None:
    """A client that opens TCP and never starts TLS is closed by the handshake deadline."""
    s = _tcp(guarded_node, "127.0.0.3")
    try:
        assert _wait_closed([s], 45) == 1
    finally:
        s.close()


def test_stalled_body_is_closed(guarded_node: LiveNode) -> None:
    """A body that stops arriving ends the request and the connection (408 or close)."""
    s = _tls(guarded_node, guarded_node.tls, "127.0.0.4")
    try:
        s.sendall(
            b"POST /v1/functions/probe/invoke HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Bearer "
            + guarded_node.admin_key.encode()
            + b'\r\nContent-Length: 100\r\n\r\n{"a": '
        )
        assert _wait_closed([s], 45) == 1
        assert _healthy(guarded_node) == (200, 200)
    finally:
        s.close()


def _poll_reply(s: ssl.SSLSocket, sel: selectors.BaseSelector) -> bytes | None:
    """What the server has sent so far, without waiting (None: nothing yet)."""
    if not sel.select(timeout=0):
        return None
    s.setblocking(False)
    try:
        return s.recv(4096)  # b"" at EOF
    except (ssl.SSLWantReadError, BlockingIOError):
        return None  # TLS records without data (session tickets)
    finally:
        s.settimeout(60)


def test_header_of_several_mib_gets_431(node: LiveNode) -> None:
    """One 8 MiB header is refused with 431 while it arrives; the node answers afterwards."""
    size = 8 * 2**20
    s = _tls(node, node.tls, "127.0.0.5")
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    sent = 0
    early: bytes | None = None
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        chunk = b"a" * 65536
        while sent < size and early is None:
            s.sendall(chunk)
            sent += len(chunk)
            early = _poll_reply(s, sel)
        if early is None:
            s.sendall(b"\r\n\r\n")
    except OSError:
        pass
    try:
        reply = (early or b"") + _read_reply(s)
    finally:
        sel.close()
        s.close()
    assert reply.startswith(b"HTTP/1.1 431 "), (sent, reply[:200])
    assert sent < size
    assert _healthy(node) == (200, 200)


def test_too_many_headers_get_431(node: LiveNode) -> None:
    """A head of 500 small header fields is refused with 431."""
    s = _tls(node, node.tls, "127.0.0.6")
    try:
        fields = b"".join(b"X-F%d: v\r\n" % i for i in range(500))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + fields + b"\r\n")
        reply = _read_reply(s)
    finally:
        s.close()
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]


def test_a_trusted_proxy_is_not_held_to_the_per_address_cap(guarded_node: LiveNode) -> None:
    """80 connections at once from the trusted proxy (127.0.0.1) are all served."""
    context = guarded_node.tls
    held = [_tls(guarded_node, context, "127.0.0.1") for _ in range(80)]
    try:
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        replies = [_read_reply(s)[:15] for s in held]
    finally:
        _close_all(held)
    assert replies == [b"HTTP/1.1 200 OK"] * 80


def _denied_client(node: LiveNode, local_address: str) -> str:
    """The `client` the audit records for an anonymous call carrying a spoofed X-Forwarded-For."""
    transport = httpx.HTTPTransport(verify=node.tls, local_address=local_address)
    with httpx.Client(base_url=node.url, transport=transport, timeout=60) as c:
        r = c.post(
            "/v1/functions/probe/invoke",
            content=json.dumps({}),
            headers={"x-forwarded-for": SPOOFED, "x-forwarded-proto": "http"},
        )
    body = assert_problem(r, 401)
    records = audit_records(node, body["request_id"])
    assert len(records) == 1, records
    client: str = records[0]["detail"]["client"]
    return client


def test_spoofed_forwarded_for_is_not_recorded_as_client(node: LiveNode) -> None:
    """With no trusted proxies (the default), X-Forwarded-For from a local process is ignored."""
    source = fresh_source()  # a new client: its first denial in a window is its own record
    assert _denied_client(node, source) == source


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(guarded_node: LiveNode) -> None:
    """With DONJON_TRUSTED_PROXIES=127.0.0.1/32 its X-Forwarded-For is believed; others' not."""
    assert _denied_client(guarded_node, "127.0.0.1") == SPOOFED
    untrusted = fresh_source()
    assert _denied_client(guarded_node, untrusted) == untrusted
