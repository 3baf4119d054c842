"""Requests whose end two parsers in the chain could disagree about (hG-52).

A request asking for a protocol upgrade (`Connection: upgrade` with `Upgrade:`, or the
CONNECT method) stops httptools at its head: whatever follows in the same read is
dropped, and what comes in a later read is parsed as a new request. The node serves no
upgrade, so the request was served as plain HTTP with its body never read (the function
saw an empty body under a Content-Length of its own), and the body, arriving a moment
later, was answered as a request of its own: behind a proxy framing by Content-Length,
one request got two answers (the second read as the next client's), and the request
hidden in the body carried whatever forwarded address it named. Now such a request is
refused from its head (501), and the connection ends there.
"""

from __future__ import annotations

import re
import secrets
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from harness import LiveNode, fresh_source, start_node
from sec_support import read_until_closed

ECHO = "desync-echo"
#: A whole request with the admin's key, hidden in a body: never to be answered.
HIDDEN = "GET /v1/keys HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n\r\n"


@pytest.fixture(scope="module")
def desync(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node with an echo function, invoked and behind an http trigger."""
    root = tmp_path_factory.mktemp("http-desync")
    live = start_node(root / "node")
    try:
        d = root / f"{ECHO}-{secrets.token_hex(3)}"
        d.mkdir()
        (d / "donjon.yaml").write_text(
            f"name: {ECHO}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
            f"triggers:\n  - http: {{path: /{ECHO}, methods: [GET, POST], auth: key}}\n"
        )
        (d / "main.py").write_text("def handler(event, context):\n    return {'event': event}\n")
        live.deploy(d)
        yield live
    finally:
        live.stop()


def _tls(node: LiveNode) -> ssl.SSLSocket:
    port = int(node.url.rsplit(":", 1)[1])
    raw = socket.create_connection(
        ("127.0.0.1", port), timeout=30, source_address=(fresh_source(), 0)
    )
    return node.tls.wrap_socket(raw, server_hostname="127.0.0.1")


def _exchange(node: LiveNode, parts: list[bytes], within: float = 5.0) -> tuple[bytes, bool]:
    """Send each part in a read of its own (a pause between them), then read what the
    node answers within `within` seconds; whether it closed the connection."""
    s = _tls(node)
    try:
        for part in parts:
            s.sendall(part)
            time.sleep(0.3)
        return read_until_closed(s, within)
    finally:
        s.close()


def _keyed_post(
    node: LiveNode, target: str, fields: str, body: bytes = b"", host: str | None = "localhost"
) -> bytes:
    """A POST to `target` with the admin's key and `host` (None: no Host field), then
    `fields` (each ending in CRLF) and `body` after the head."""
    field = "" if host is None else f"Host: {host}\r\n"
    head = f"POST {target} HTTP/1.1\r\n{field}Authorization: Bearer {node.admin_key}\r\n"
    return (head + fields + "\r\n").encode() + body


def _call(node: LiveNode, n: int) -> bytes:
    """An invoke of the echo function whose answer carries `n`."""
    body = b'{"n": %d}' % n
    return _keyed_post(
        node, f"/v1/functions/{ECHO}/invoke", f"Content-Length: {len(body)}\r\n", body
    )


def _statuses(data: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)


@pytest.mark.parametrize("path", ["/v1/functions/{}/invoke", "/fn/{}"])
def test_an_upgrade_with_a_body_is_refused_and_its_body_never_answered(
    desync: LiveNode, path: str
) -> None:
    """A POST asking to upgrade to WebSocket, its body a whole request sent in a read of
    its own: one 501, the connection closed, the hidden request never answered. Before:
    the POST was served with an empty body, then the body answered 200 (the key list)."""
    hidden = HIDDEN.format(key=desync.admin_key).encode()
    head = (
        f"POST {path.format(ECHO)} HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {desync.admin_key}\r\nContent-Type: application/json\r\n"
        f"Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: {len(hidden)}\r\n\r\n"
    ).encode()
    data, closed = _exchange(desync, [head, hidden])
    assert _statuses(data) == [b"501"], data[:600]
    assert b'"keys"' not in data and b"sigv4" not in data
    assert closed, "the connection stayed open after a refused upgrade"


@pytest.mark.parametrize(
    "head",
    [
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ],
    ids=["h2c", "connect"],
)
def test_an_upgrade_ends_the_connection_after_its_refusal(desync: LiveNode, head: str) -> None:
    """An h2c upgrade or a CONNECT, a request pipelined behind it in the same read and
    one more in a later read: one 501 and the close, nothing after it answered. Before:
    the h2c GET was answered, the request in its read dropped without an answer, the
    later one answered (CONNECT: no answer at all, the next request answered)."""
    follow = HIDDEN.format(key=desync.admin_key).encode()
    data, closed = _exchange(desync, [head.encode() + follow, follow])
    assert _statuses(data) == [b"501"], data[:600]
    assert closed


def test_an_upgrade_header_alone_is_no_upgrade(desync: LiveNode) -> None:
    """`Upgrade: h2c` without `Connection: upgrade` asks for nothing: served as usual,
    and the request behind it too."""
    h2c = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nUpgrade: h2c\r\n\r\n"
    data, _ = _exchange(desync, [h2c, h2c], within=3)
    assert _statuses(data) == [b"200", b"200"], data[:600]


@pytest.mark.parametrize("path", ["/v1/functions/{}/invoke", "/fn/{}"])
def test_an_early_answer_to_an_awaited_100_continue_ends_the_connection(
    desync: LiveNode, path: str
) -> None:
    """`Expect: 100-continue` with a bad key: the 401 comes instead of 100 Continue, and
    the client may then send its body or not (RFC 9110 10.1.1). One that does not, and
    sends its next request instead, had that request read as the body and never answered
    (behind a proxy, the answer to the request after it taken as its answer). Now the 401
    says connection: close and the node closes: nothing after that head is guessed at."""
    nxt = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    head = (
        f"POST {path.format(ECHO)} HTTP/1.1\r\nHost: localhost\r\n"
        "Authorization: Bearer dj_0123456789abcdef\r\nExpect: 100-continue\r\n"
        f"Content-Length: {len(nxt)}\r\n\r\n"
    ).encode()
    data, closed = _exchange(desync, [head, nxt], within=3)
    assert _statuses(data) == [b"401"], data[:600]
    assert b"\r\nconnection: close\r\n" in data.lower(), data[:600]
    assert closed, "the connection stayed open, its next request read as a body"


def test_a_body_sent_after_100_continue_keeps_the_connection(desync: LiveNode) -> None:
    """`Expect: 100-continue`, the 100, the body: answered, and the connection serves on."""
    body = b'{"a": 1}'
    head = (
        f"POST /v1/functions/{ECHO}/invoke HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {desync.admin_key}\r\nExpect: 100-continue\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    nxt = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    data, closed = _exchange(desync, [head, body, nxt], within=4)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", data) == [b"100", b"200", b"200"], data[:600]
    assert b'"a": 1' in data or b'"a":1' in data
    assert not closed


@pytest.mark.parametrize(
    "hosts",
    [["localhost", "evil.example"], ["localhost", "localhost"], []],
    ids=["two-differ", "two-same", "none"],
)
def test_a_request_without_exactly_one_host_is_400(desync: LiveNode, hosts: list[str]) -> None:
    """Two Host fields, or none in HTTP/1.1 (RFC 9112 3.2: a server MUST answer 400).
    Before, served: the function's event named the last Host, the API Gateway event's
    domainName and anything reading `request.headers` the first."""
    lines = "".join(f"Host: {host}\r\n" for host in hosts)
    head = (
        f"POST /fn/{ECHO} HTTP/1.1\r\n{lines}Authorization: Bearer {desync.admin_key}\r\n"
        "Content-Length: 2\r\n\r\n{}"
    ).encode()
    data, closed = _exchange(desync, [head], within=3)
    assert _statuses(data) == [b"400"], data[:600]
    assert closed


def test_http_1_0_without_host_is_served(desync: LiveNode) -> None:
    """HTTP/1.0 has no Host to require: served as before."""
    data, _ = _exchange(desync, [b"GET /healthz HTTP/1.0\r\n\r\n"], within=3)
    assert _statuses(data) == [b"200"], data[:600]


@pytest.mark.parametrize(
    ("target", "host"),
    [
        ("https://evil.example/fn/{}", "localhost"),
        ("https://localhost:1/fn/{}", "localhost"),
        ("http://[::1]/fn/{}", "localhost"),
        ("https://evil.example/fn/{}", ""),
    ],
    ids=["other-host", "other-port", "v6-literal", "no-host"],
)
def test_an_absolute_target_naming_another_host_than_host_is_400(
    desync: LiveNode, target: str, host: str
) -> None:
    """An absolute-form target names the request's host, and Host is to be ignored (RFC
    9112 3.2.2); the node read only Host, so the function's event named one host and
    the request another (helper-157's open finding). Now they must agree."""
    head = _keyed_post(desync, target.format(ECHO), "Content-Length: 2\r\n", b"{}", host or None)
    data, closed = _exchange(desync, [head], within=3)
    assert _statuses(data) == [b"400"], data[:600]
    assert closed


@pytest.mark.parametrize(
    ("target", "host"),
    [("https://LocalHost/fn/{}", "localhost"), ("http://[::1]:8443/fn/{}", "[::1]:8443")],
)
def test_an_absolute_target_naming_the_host_is_served(
    desync: LiveNode, target: str, host: str
) -> None:
    fields = "Content-Length: 2\r\nConnection: close\r\n"
    head = _keyed_post(desync, target.format(ECHO), fields, b"{}", host)
    data, _ = _exchange(desync, [head], within=3)
    assert _statuses(data) == [b"200"], data[:600]


@pytest.mark.parametrize("broken", ["too-many-fields", "nul-in-a-value"])
def test_a_broken_head_pipelined_behind_a_call_is_refused_after_its_answer(
    desync: LiveNode, broken: str
) -> None:
    """An invoke and, in the same read, a head the node refuses (431, 400): the call's
    answer first, then the refusal, then the close. Before, the refusal was written at
    once and the call's answer dropped: the client (or a proxy carrying other callers'
    requests) took the refusal for the call's answer."""
    call = _call(desync, 1)
    fields = (
        "".join(f"X-{i}: a\r\n" for i in range(150)) if broken == "too-many-fields" else "X: \0\r\n"
    )
    head = f"GET /healthz HTTP/1.1\r\nHost: localhost\r\n{fields}\r\n".encode()
    data, closed = _exchange(desync, [call + head], within=5)
    refusal = b"431" if broken == "too-many-fields" else b"400"
    assert _statuses(data) == [b"200", refusal], data[:600]
    assert b'"n": 1' in data or b'"n":1' in data
    assert closed


@pytest.mark.parametrize("route", ["/v1/functions/{}/invoke", "/fn/{}"])
def test_a_body_broken_on_its_way_is_no_server_error(desync: LiveNode, route: str) -> None:
    """A chunked body whose framing breaks after its head was read: 400, and the node's
    log says nothing of it. Before, the handler met Starlette's ClientDisconnect as an
    unexpected exception: every such request wrote an `internal error` and a traceback of
    about 2 KB to the node's log (a keyed client's cheap way to fill its disk)."""
    path = route.format(ECHO)
    log = desync.data_dir / "serve.log"
    before = log.stat().st_size
    chunked = "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    head = _keyed_post(desync, path, chunked)
    for _ in range(3):
        data, closed = _exchange(desync, [head, b"2\r\n{}\r\nZZ\r\n"], within=5)
        assert _statuses(data) == [b"400"], data[:600]
        assert closed
    time.sleep(0.5)  # the handler's end, after the answer
    with log.open("rb") as f:
        f.seek(before)
        written = f.read().decode(errors="replace")
    assert "Traceback" not in written and "internal error" not in written, written[-3000:]


@pytest.mark.parametrize("route", ["/v1/functions/{}/invoke", "/fn/{}"])
def test_a_broken_body_pipelined_behind_a_call_is_refused_after_its_answer(
    desync: LiveNode, route: str
) -> None:
    """An invoke and, in the same read, a request whose chunked body breaks: the call's
    answer first, then the 400, then the close; the broken request is never run. Before,
    the 400 was written at once and the connection closed under the call, whose answer
    was lost (helper-157's open finding: the head's case was mended, the body's not)."""
    broken = _keyed_post(
        desync, route.format(ECHO), "Transfer-Encoding: chunked\r\n", b"2\r\n{}\r\nZZ\r\n"
    )
    data, closed = _exchange(desync, [_call(desync, 2) + broken], within=5)
    assert _statuses(data) == [b"200", b"400"], data[:600]
    assert b'"n": 2' in data or b'"n":2' in data
    assert closed


def test_a_chunked_bodys_trailer_fields_are_dropped_and_bounded(desync: LiveNode) -> None:
    """Trailer fields after a chunked body: read and dropped, and bounded as a head is.
    Before, they were appended to the request's headers after its app had read them,
    and counted against the limits of the connection's next head: 95 trailers made the
    next request, with 10 fields, a 431."""
    trailers = "".join(f"X-T{i}: a\r\n" for i in range(95))
    chunked = "Transfer-Encoding: chunked\r\n"
    first = _keyed_post(
        desync, f"/fn/{ECHO}", chunked, f"2\r\n{{}}\r\n0\r\n{trailers}\r\n".encode()
    )
    fields = "".join(f"X-{i}: a\r\n" for i in range(8))
    second = f"GET /healthz HTTP/1.1\r\nHost: localhost\r\n{fields}Connection: close\r\n\r\n"
    data, closed = _exchange(desync, [first, second.encode()], within=5)
    assert _statuses(data) == [b"200", b"200"], data[:800]
    assert b"x-t1" not in data.lower()  # no trailer reached the function's event
    assert closed
    many = "".join(f"X-T{i}: a\r\n" for i in range(150))
    over = _keyed_post(desync, f"/fn/{ECHO}", chunked, f"2\r\n{{}}\r\n0\r\n{many}\r\n".encode())
    data, closed = _exchange(desync, [over], within=5)
    assert _statuses(data) == [b"431"], data[:600]
    assert closed
