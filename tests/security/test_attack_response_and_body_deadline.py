"""A function returning more than the node's response limit, a client trickling its body,
a client opening more connections than its address may hold (issue 15, point 3).

A node of its own, with a 1 MiB response limit (DONJON_MAX_RESPONSE_BYTES: the setting
reaches the sandbox too), a 4 s whole-body deadline and 8 connections per address.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from harness import LiveNode, fresh_source, start_node
from sec_support import assert_problem, audit_records, string_function

RESPONSE_LIMIT = 1024 * 1024
PER_CLIENT = 8


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node with a 1 MiB response limit, short body deadlines, 8 connections per address."""
    root = tmp_path_factory.mktemp("tight")
    live = start_node(
        root / "node",
        {
            "DONJON_MAX_RESPONSE_BYTES": str(RESPONSE_LIMIT),
            "DONJON_BODY_TIMEOUT_S": "2",
            "DONJON_BODY_DEADLINE_S": "4",
            "DONJON_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
            "DONJON_HEAD_TIMEOUT_S": "120",  # heads held open on purpose stay open
        },
    )
    try:
        live.deploy(string_function(root, "rq-big"))
        live.deploy(string_function(root, "rq-big-warm", "isolation: warm\n"))
        yield live
    finally:
        live.stop()


@pytest.mark.parametrize("fn", ["rq-big", "rq-big-warm"])
def test_result_over_the_response_limit_is_502(tight: LiveNode, fn: str) -> None:
    """2 MiB returned against a 1 MiB limit: 502 naming the limit, audited as the function's
    fault; never a truncated body; the next call is served."""
    r = tight.invoke(fn, {"n": 2 * RESPONSE_LIMIT})
    body = assert_problem(r, 502)
    assert f"{RESPONSE_LIMIT} bytes" in body["detail"], body
    assert "DONJON_MAX_RESPONSE_BYTES" in body["detail"], body
    (record,) = audit_records(tight, body["request_id"])
    assert record["outcome"] == "FunctionResultTooLarge", record
    ok = tight.invoke(fn, {"n": RESPONSE_LIMIT - 2})  # exactly at the limit: served whole
    assert ok.status_code == 200 and len(ok.content) == RESPONSE_LIMIT, ok.status_code


def _tls(node: LiveNode, source: str) -> ssl.SSLSocket:
    port = int(node.url.rsplit(":", 1)[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0))
    return node.tls.wrap_socket(raw, server_hostname="127.0.0.1")


def test_trickled_body_is_cut_at_the_body_deadline(tight: LiveNode) -> None:
    """A body sent a byte every half second (progress enough for the stall timer) is
    answered 408 and closed once the whole-body deadline passes, long before its end."""
    s = _tls(tight, fresh_source())
    s.settimeout(0.5)
    sent = 0
    reply = b""
    try:
        s.sendall(
            b"POST /v1/functions/rq-big/invoke HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Bearer " + tight.admin_key.encode() + b"\r\n"
            b"Content-Length: 60\r\n\r\n"
        )
        while sent < 60 and not reply:  # 30 s at this pace: the deadline is 4 s
            try:
                s.sendall(b" ")
                sent += 1
                reply = s.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
    finally:
        s.close()
    assert reply.startswith(b"HTTP/1.1 408 "), (sent, reply[:200])
    assert sent < 60


def test_an_answered_requests_stalled_body_gets_no_second_answer(tight: LiveNode) -> None:
    """A call refused from its head (a wrong key: 401) whose body never comes: the one
    answer is the 401; when the body's timers run out the connection is closed, with no
    408 written after it (a client would read that as its next request's answer)."""
    s = _tls(tight, fresh_source())
    s.settimeout(15)  # the body timers here are 2 s and 4 s
    reply = b""
    try:
        s.sendall(
            b"POST /v1/functions/rq-big/invoke HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Bearer dj_" + b"x" * 40 + b"\r\n"
            b"Content-Length: 60\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                reply += chunk
    finally:
        s.close()
    assert reply.startswith(b"HTTP/1.1 401 "), reply[:200]
    assert reply.count(b"HTTP/1.1 ") == 1, reply


def test_connections_over_the_per_address_cap_are_closed(tight: LiveNode) -> None:
    """An address holding its 8 connections gets the next ones closed at once; another
    address is served meanwhile."""
    source = fresh_source()
    held: list[ssl.SSLSocket] = []
    refused = 0
    try:
        for _ in range(PER_CLIENT + 4):
            try:
                s = _tls(tight, source)
            except OSError:  # closed during the handshake: over the cap
                refused += 1
                continue
            held.append(s)
            with contextlib.suppress(OSError):  # closed already: counted below
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")  # a head cut short
        # A connection closed right after its handshake reads EOF (or a reset) at once.
        for s in list(held):
            s.settimeout(2)
            try:
                data = s.recv(1)
            except TimeoutError:
                continue  # still open: one of the 8 the address may hold
            except OSError:
                data = b""
            if not data:
                refused += 1
                held.remove(s)
                s.close()
        assert len(held) == PER_CLIENT and refused == 4, (len(held), refused)
        with tight.client(source=fresh_source()) as c:
            assert c.get("/healthz").status_code == 200
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 60  # once they are gone, the address is served again
    while time.monotonic() < deadline:
        try:
            with tight.client(source=source) as c:
                if c.get("/healthz").status_code == 200:
                    return
        except Exception:
            time.sleep(0.2)
    raise AssertionError(f"{source} was not served again after closing its connections")
