"""Requests answered before their body is in (review35 of e6dc84f): a 413 while the body
still arrives ends the connection with one `connection: close`, however the client asked
(a `Connection: close` of its own, `Expect: 100-continue`), on every way in; a body whose
request was answered early (401, 413, 429) is drained, never parsed as a request, and
the connection then serves on; a 429 with Retry-After still rests; no connection is kept.

A node of its own: a 10 s body stall timer and a 30 s whole-body deadline (so a close
within a few seconds is the 413's, not a timer's) and 8 connections per address.
"""

from __future__ import annotations

import secrets
import select
import socket
import ssl
import time
from collections.abc import Iterator

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from harness import LiveNode, fresh_source, start_node
from sec_support import read_until_closed

SMALL = "ea-small"  # limits.body 64KiB, with an http trigger
PER_CLIENT = 8
BODY_TIMEOUT_S = 10
LAMBDA_PATH = "/2015-03-31/functions/{}/invocations"
#: A whole request, with the admin's key, hidden in a body: it must never be answered.
SMUGGLED = "GET /v1/keys HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n\r\n"
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def early(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node with long body timers, 8 connections per address, one 64 KiB function."""
    root = tmp_path_factory.mktemp("early-answers")
    live = start_node(
        root / "node",
        {
            "DONJON_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
            "DONJON_BODY_DEADLINE_S": "30",
            "DONJON_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
        },
    )
    try:
        d = root / f"{SMALL}-{secrets.token_hex(3)}"
        d.mkdir()
        (d / "donjon.yaml").write_text(
            f"name: {SMALL}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
            "limits: {body: 64KiB}\n"
            f"triggers:\n  - http: {{path: /{SMALL}, methods: [POST], auth: key}}\n"
        )
        (d / "main.py").write_text("def handler(event, context):\n    return {'ok': True}\n")
        live.deploy(d)
        yield live
    finally:
        live.stop()


def _tls(node: LiveNode, source: str | None = None) -> ssl.SSLSocket:
    port = int(node.url.rsplit(":", 1)[1])
    raw = socket.create_connection(
        ("127.0.0.1", port), timeout=30, source_address=(source or fresh_source(), 0)
    )
    return node.tls.wrap_socket(raw, server_hostname="127.0.0.1")


def _head(node: LiveNode, path: str, extra: str, key: str | None = None) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {node.admin_key if key is None else key}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def _responses(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (head, body) of each whole response in `data` (content-length bodies)."""
    out = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        out.append((head, rest[:length]))
        data = rest[length:]
    return out


def _connection_lines(head: bytes) -> list[bytes]:
    return [line for line in head.split(b"\r\n") if line.lower().startswith(b"connection:")]


def _lambda_head(node: LiveNode, payload: bytes) -> bytes:
    """A Lambda Invoke head signed for `payload` (the body is never sent)."""
    with node.client() as c:
        key = c.post("/v1/keys", json={"name": f"ea-{secrets.token_hex(3)}", "role": "admin"})
    assert key.status_code == 201, key.text
    url = node.url + LAMBDA_PATH.format(SMALL)
    request = AWSRequest(method="POST", url=url, data=payload)
    creds = Credentials(key.json()["id"], key.json()["sigv4_secret"])
    botocore.auth.SigV4Auth(creds, "lambda", "us-east-1").add_auth(request)
    lines = [f"POST {LAMBDA_PATH.format(SMALL)} HTTP/1.1", "Host: localhost"]
    lines += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() != "host"]
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("route", ["invoke", "trigger", "lambda"])
def test_declared_length_over_the_limit_gets_413_and_the_connection_ends(
    early: LiveNode, route: str
) -> None:
    """A head declaring 200,000 bytes to a 64 KiB function (7 MiB to the Lambda API), its
    body never sent: one 413 saying connection: close, and the node closes at once (not at
    the body's 10 s stall)."""
    if route == "lambda":
        # The Lambda API reads a body up to the node's maximum (6 MiB) before its
        # signature, the function's own limit after: past the node's is refused from the head.
        head = _lambda_head(early, b"a" * (7 * 1024 * 1024))
    else:
        path = f"/v1/functions/{SMALL}/invoke" if route == "invoke" else f"/fn/{SMALL}"
        head = _head(early, path, "Content-Length: 200000\r\n")
    s = _tls(early)
    try:
        s.sendall(head)
        data, closed = read_until_closed(s, BODY_TIMEOUT_S / 2)
    finally:
        s.close()
    answers = _responses(data)
    assert [h.split(b" ", 2)[1] for h, _ in answers] == [b"413"], data[:400]
    assert _connection_lines(answers[0][0]) == [b"connection: close"], answers[0][0]
    assert closed, "the node kept the connection of a refused body open"


def test_413_to_a_client_that_said_close_has_one_connection_header(early: LiveNode) -> None:
    """A client sending `Connection: close` and a body over the limit: the 413's head holds
    one `connection: close` line, not uvicorn's and the gateway's both."""
    s = _tls(early)
    try:
        s.sendall(
            _head(
                early,
                f"/v1/functions/{SMALL}/invoke",
                "Content-Length: 200000\r\nConnection: close\r\n",
            )
        )
        data, closed = read_until_closed(s, BODY_TIMEOUT_S / 2)
    finally:
        s.close()
    answers = _responses(data)
    assert len(answers) == 1 and answers[0][0].startswith(b"HTTP/1.1 413 "), data[:400]
    assert _connection_lines(answers[0][0]) == [b"connection: close"], answers[0][0]
    assert closed


def test_chunked_body_past_the_limit_after_100_continue_ends_the_connection(
    early: LiveNode,
) -> None:
    """`Expect: 100-continue` then a chunked body past 64 KiB: the 413 says connection:
    close and the node stops reading, as without the Expect (not at the 30 s deadline)."""
    s = _tls(early)
    chunk = b'"' + b"a" * (16 * 1024 - 2) + b'"'
    data = b""
    try:
        s.sendall(
            _head(
                early,
                f"/v1/functions/{SMALL}/invoke",
                "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n",
            )
        )
        interim, _ = read_until_closed(s, 10, until=b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        closed = False
        end = time.monotonic() + 8  # keep sending: progress for the stall timer
        while time.monotonic() < end and not closed:
            try:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                closed = True
                break
            if select.select([s], [], [], 0)[0] or s.pending():
                more, closed = read_until_closed(s, 0.05)
                data += more
        if not closed:
            more, closed = read_until_closed(s, 0.5)
            data += more
    finally:
        s.close()
    answers = _responses(interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :] + data)
    assert answers and answers[0][0].startswith(b"HTTP/1.1 413 "), data[:400]
    assert len(answers) == 1, data[:600]
    assert _connection_lines(answers[0][0]) == [b"connection: close"], answers[0][0]
    assert closed, "the node read on a body it refused for its size"


def test_request_pipelined_behind_a_chunked_413_is_never_a_hidden_ones(early: LiveNode) -> None:
    """A chunked body past the limit that carries a whole request, then a pipelined
    /healthz, sent at once: the 413, then either the close it announces or /healthz's
    answer; never an answer to the request inside the body."""
    smuggled = SMUGGLED.format(key=early.admin_key).encode()
    pad = b'"' + b"a" * (70 * 1024) + b'"'
    body = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(pad), pad, len(smuggled), smuggled)
    s = _tls(early)
    try:
        s.sendall(
            _head(early, f"/v1/functions/{SMALL}/invoke", "Transfer-Encoding: chunked\r\n")
            + body
            + HEALTH
        )
        data, closed = read_until_closed(s, 8)
    finally:
        s.close()
    answers = _responses(data)
    statuses = [h.split(b" ", 2)[1] for h, _ in answers]
    assert statuses[:1] == [b"413"], data[:400]
    assert b'"key_id"' not in data and b"/v1/keys" not in data, data[:600]
    if _connection_lines(answers[0][0]) == [b"connection: close"]:
        assert statuses == [b"413"], statuses
    else:
        assert statuses == [b"413", b"200"] and b'"status"' in answers[1][1], data[:600]
    assert closed


@pytest.mark.parametrize("answer", ["401", "413"])
def test_body_of_a_request_answered_early_is_drained_not_parsed(
    early: LiveNode, answer: str
) -> None:
    """A request answered from its head (a wrong key: 401, or a declared body over the
    limit sent whole at once: 413) whose body is a whole request: that request is never
    answered; after a 401 (the connection stays) the next request is /healthz's."""
    smuggled = SMUGGLED.format(key=early.admin_key).encode()
    s = _tls(early)
    try:
        if answer == "401":
            s.sendall(
                _head(
                    early,
                    f"/v1/functions/{SMALL}/invoke",
                    f"Content-Length: {len(smuggled)}\r\n",
                    key="dj_" + "x" * 40,
                )
            )
            first, _ = read_until_closed(s, 10, until=b"\r\n\r\n")
            first += s.recv(65536)  # the 401's body (one TLS record with its head)
            s.sendall(smuggled + HEALTH)
        else:
            body = b"a" * (70 * 1024) + smuggled
            s.sendall(
                _head(early, f"/v1/functions/{SMALL}/invoke", f"Content-Length: {len(body)}\r\n")
                + body
                + HEALTH
            )
            first = b""
        data, closed = read_until_closed(s, 8)
    finally:
        s.close()
    answers = _responses(first + data)
    statuses = [h.split(b" ", 2)[1] for h, _ in answers]
    assert b'"key_id"' not in data, data[:600]
    if answer == "401":
        assert _connection_lines(answers[0][0]) == [], answers[0][0]
        assert statuses == [b"401", b"200"], data[:600]
        assert b'"status"' in answers[1][1] and b'"ok"' in answers[1][1], answers[1][1]
    else:
        assert statuses in ([b"413"], [b"413", b"200"]), data[:600]
        if len(statuses) == 2:
            assert _connection_lines(answers[0][0]) == [], answers[0][0]
            assert b'"status"' in answers[1][1], answers[1][1]
    assert closed


def test_429_with_retry_after_still_rests_and_drains_its_body(early: LiveNode) -> None:
    """A key over its rate (burst 1) on one connection: 200, then a 429 with Retry-After
    answered from its head while its body is pending, with no connection: close; the body
    that follows is drained and the next request is answered after the rest."""
    key = early.create_key(
        f"ea-rate-{secrets.token_hex(3)}", "invoker", [SMALL], {"rate": "1/minute", "burst": 1}
    )["key"]
    event = b'{"a": 1}'
    path = f"/v1/functions/{SMALL}/invoke"
    s = _tls(early)
    try:
        s.sendall(_head(early, path, f"Content-Length: {len(event)}\r\n", key) + event)
        ok, _ = read_until_closed(s, 30, until=b"}")
        s.sendall(_head(early, path, f"Content-Length: {len(event)}\r\n", key))
        refused, _ = read_until_closed(s, 10, until=b"\r\n\r\n")
        started = time.monotonic()
        s.sendall(event + HEALTH)
        data, closed = read_until_closed(s, 20)
        waited = time.monotonic() - started
    finally:
        s.close()
    assert ok.startswith(b"HTTP/1.1 200 "), ok[:300]
    assert refused.startswith(b"HTTP/1.1 429 "), refused[:300]
    assert b"\r\nretry-after: " in refused.lower() and not _connection_lines(refused), refused
    length = next(
        int(line.split(b":", 1)[1])
        for line in refused.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    rest = _responses(data[length:])  # after the 429's body
    assert [h.split(b" ", 2)[1] for h, _ in rest] == [b"200"], data[:600]
    assert b'"status"' in rest[0][1], rest
    assert closed
    assert waited >= 0.4, waited  # rested (half the share of a rest at least): read late


def test_connections_of_refused_bodies_are_all_released(early: LiveNode) -> None:
    """Twice the per-address cap of connections from one address, one after another, each
    a 413 from its head (body never sent): the node closes every one (the client closes
    its end once it sees that), and the address is still served after them."""
    source = fresh_source()
    for n in range(2 * PER_CLIENT):
        s = _tls(early, source)
        try:
            s.sendall(_head(early, f"/v1/functions/{SMALL}/invoke", "Content-Length: 200000\r\n"))
            data, closed = read_until_closed(s, BODY_TIMEOUT_S / 2)
        finally:
            s.close()
        assert data.startswith(b"HTTP/1.1 413 ") and closed, (n, data[:200])
    with early.client(source=source) as c:
        assert c.get("/healthz").status_code == 200


def test_broken_chunked_body_after_an_early_answer_gets_no_second_answer(
    early: LiveNode,
) -> None:
    """A call refused from its head (a wrong key: 401) whose chunked body then breaks the
    chunk syntax: the one answer is the 401 and the connection is closed, no 400 after it
    (a client would read that as its next request's answer)."""
    s = _tls(early)
    try:
        s.sendall(
            _head(
                early,
                f"/v1/functions/{SMALL}/invoke",
                "Transfer-Encoding: chunked\r\n",
                key="dj_" + "x" * 40,
            )
        )
        first, _ = read_until_closed(s, 10, until=b"\r\n\r\n")
        s.sendall(b"4\r\nabcd\r\nzz-not-a-size\r\n")
        data, closed = read_until_closed(s, BODY_TIMEOUT_S / 2)
    finally:
        s.close()
    answers = _responses(first + data)
    assert [h.split(b" ", 2)[1] for h, _ in answers] == [b"401"], (first + data)[:600]
    assert (first + data).count(b"HTTP/1.1 ") == 1, (first + data)[:600]
    assert closed, "a broken body after an early answer left its connection open"


def test_refused_connections_the_client_keeps_are_released_in_time(early: LiveNode) -> None:
    """The per-address cap's worth of 413s from their heads, each connection kept open by
    the client after the node closed it: the address is admitted again within 60 s (the
    TLS shutdown's wait for the client's close_notify is bounded), never held for good."""
    source = fresh_source()
    held: list[ssl.SSLSocket] = []
    try:
        for n in range(PER_CLIENT):
            s = _tls(early, source)
            held.append(s)
            s.sendall(_head(early, f"/v1/functions/{SMALL}/invoke", "Content-Length: 200000\r\n"))
            data, closed = read_until_closed(s, BODY_TIMEOUT_S / 2)
            assert data.startswith(b"HTTP/1.1 413 ") and closed, (n, data[:200])
        started = time.monotonic()
        while time.monotonic() - started < 60:
            try:
                with early.client(source=source) as c:
                    if c.get("/healthz").status_code == 200:
                        print(f"admitted again after {time.monotonic() - started:.1f} s")
                        return
            except Exception:  # over the cap: closed at once
                time.sleep(0.5)
        raise AssertionError(f"{source} was still over its cap 60 s after its 413s")
    finally:
        for s in held:
            s.close()
