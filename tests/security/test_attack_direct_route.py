"""The invoke route served below uvicorn's ASGI cycle (gateway/direct.py) answers every
request, hostile or not, byte for byte as the ASGI path answers it.

A request whose head arrives while no other request of its connection is being served
is the direct route's (if it is the plain case); the same request pipelined behind
another one is uvicorn's and Starlette's, as before. Each shape below is sent both ways
over raw TLS, to a real node, and the two answers (status line, every header in order,
body, and whether the connection stays open) must be the same apart from the date and
the request's random id. The framing attacks (smuggling, lying lengths, obs-fold,
bodies short of or far past their length, pipelining, a client leaving mid-call, the
rest after a 429) are checked against what the ASGI path does.
"""

from __future__ import annotations

import re
import secrets
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import FUNCTIONS, LiveNode, fresh_source, start_node

PATH = "/v1/functions/probe-warm/invoke"
#: Bounds for what the server must do on its own (its deadlines here are 2-4 s).
BOUND_S = 60
#: The rest after a 429 (DONJON_REFUSAL_HOLD_S): a connection rests at least half of it.
HOLD_S = 2.0


@pytest.fixture(scope="module")
def direct_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node with short body deadlines, the probe in warm mode, a rate-limited function
    and one with an input schema and a 1 KiB body limit."""
    root = tmp_path_factory.mktemp("direct")
    live = start_node(
        root / "data",
        {
            "DONJON_BODY_TIMEOUT_S": "2",
            "DONJON_BODY_DEADLINE_S": "4",
            "DONJON_REFUSAL_HOLD_S": str(HOLD_S),
        },
    )
    try:
        warm = root / "probe-warm"
        warm.mkdir()
        for f in (FUNCTIONS / "probe").iterdir():
            (warm / f.name).write_bytes(f.read_bytes())
        manifest = (warm / "donjon.yaml").read_text()
        (warm / "donjon.yaml").write_text(
            manifest.replace("name: probe", "name: probe-warm") + "isolation: warm\n"
        )
        live.deploy(warm)
        schema = root / "schema"
        schema.mkdir()
        (schema / "donjon.yaml").write_text(
            "name: direct-schema\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n"
            "isolation: warm\nlimits: {body: 1KiB}\n"
            "input_schema: {type: object, required: [url]}\n"
        )
        (schema / "main.py").write_text("def handler(event, context):\n    return event\n")
        live.deploy(schema)
        yield live
    finally:
        live.stop()


# --- raw HTTP over TLS ------------------------------------------------------------------


def _tls(node: LiveNode) -> ssl.SSLSocket:
    port = int(node.url.rsplit(":", 1)[1])
    raw = socket.create_connection(
        ("127.0.0.1", port), timeout=BOUND_S, source_address=(fresh_source(), 0)
    )
    return node.tls.wrap_socket(raw, server_hostname="127.0.0.1")


def _request(
    method: str = "POST",
    path: str = PATH,
    body: bytes = b'{"op": "echo"}',
    key: str | None = None,
    extra: str = "",
    version: str = "1.1",
    length: str | None = None,
) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    size = str(len(body)) if length is None else length
    cl = f"Content-Length: {size}\r\n" if size != "" else ""
    return (
        f"{method} {path} HTTP/{version}\r\nHost: localhost\r\n{auth}{cl}{extra}\r\n"
    ).encode() + body


class _Conn:
    """Responses read off one connection, framed by their Content-Length (never chunked:
    nothing on this route is), each kept as the raw bytes that came."""

    def __init__(self, s: ssl.SSLSocket) -> None:
        self.s = s
        self.buf = b""

    def _more(self) -> bool:
        try:
            chunk = self.s.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            chunk = b""
        self.buf += chunk
        return bool(chunk)

    def response(self, head_only: bool = False) -> bytes:
        """The next response's raw bytes; b"" if the connection closed before one began."""
        while b"\r\n\r\n" not in self.buf:
            if not self._more():
                if self.buf:
                    raise AssertionError(f"closed mid-head: {self.buf[:300]!r}")
                return b""
        head, rest = self.buf.split(b"\r\n\r\n", 1)
        lengths = re.findall(rb"\r\ncontent-length: *([0-9]+)", head, re.IGNORECASE)
        assert len(lengths) <= 1, head
        assert b"transfer-encoding" not in head.lower(), head
        size = 0 if head_only or not lengths else int(lengths[0])
        while len(rest) < size:
            if not self._more():
                raise AssertionError(f"closed mid-body: {self.buf[:300]!r}")
            rest = self.buf.split(b"\r\n\r\n", 1)[1]
        self.buf = rest[size:]
        return head + b"\r\n\r\n" + rest[:size]

    def after(self) -> bytes:
        """The answer to a `GET /healthz` sent next: b"" if the server closed the
        connection, else what the connection does with it (served, or read as the rest
        of a body, or refused)."""
        try:
            self.s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        except OSError:
            return b""
        return self.response()

    def close(self) -> None:
        self.s.close()


def _normal(raw: bytes) -> bytes:
    """The response with its date, its request's id (in any header or the body), any
    other random id (a queued invocation's) and the seconds to wait after a 429 made fixed: what
    may differ between two identical requests."""
    raw = re.sub(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", b"<id>", raw)
    raw = re.sub(rb"\r\ndate: [^\r]*", b"\r\ndate: -", raw)
    raw = re.sub(rb"\r\nretry-after: [0-9]+", b"\r\nretry-after: N", raw)
    raw = re.sub(rb"\(retry in [0-9]+s\)", b"(retry in Ns)", raw)
    raw = re.sub(rb"(\r\nratelimit: [^\r]*;t=)[0-9]+", rb"\1N", raw)
    found = re.search(rb"\r\nx-request-id: ([^\r]+)", raw)
    if found is not None:
        raw = raw.replace(found.group(1), b"<request-id>")
    return raw


def _filler(node: LiveNode) -> bytes:
    """A plain request whose answer is quick (a 404 problem): whatever is pipelined
    behind it is served by uvicorn's ASGI cycle."""
    return _request(path="/v1/functions/direct-none/invoke", body=b"{}", key=node.admin_key)


def _direct(node: LiveNode, request: bytes, head_only: bool = False) -> tuple[bytes, bytes]:
    """`request` alone on a fresh connection (the direct route's, if plain): its answer,
    and what the connection does next (`_Conn.after`)."""
    conn = _Conn(_tls(node))
    try:
        conn.s.sendall(request)
        answer = conn.response(head_only)
        return answer, answer and conn.after()
    finally:
        conn.close()


def _asgi(node: LiveNode, request: bytes, head_only: bool = False) -> tuple[bytes, bytes]:
    """`request` pipelined behind a filler (uvicorn's ASGI cycle serves it), the same."""
    conn = _Conn(_tls(node))
    try:
        conn.s.sendall(_filler(node) + request)
        first = conn.response()
        assert first.startswith(b"HTTP/1.1 404 "), first[:200]
        answer = conn.response(head_only)
        return answer, answer and conn.after()
    finally:
        conn.close()


def _same_both_ways(node: LiveNode, request: bytes, head_only: bool = False) -> bytes:
    """Send `request` both ways; assert the answers and the connections' fates match."""
    direct, direct_after = _direct(node, request, head_only)
    asgi, asgi_after = _asgi(node, request, head_only)
    assert _normal(direct) == _normal(asgi), (direct, asgi)
    assert _normal(direct_after) == _normal(asgi_after), (direct_after, asgi_after)
    return direct


def _key(node: LiveNode, functions: list[str] | None = None, **limits: object) -> str:
    created = node.create_key(f"direct-{secrets.token_hex(3)}", "invoker", functions, limits)
    return str(created["key"])


# --- every shape the route answers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "status"),
    [
        ("ok", b"200"),
        ("ok-close", b"200"),
        ("ok-1.0", b"200"),
        ("ok-1.0-keep-alive", b"200"),
        ("ok-no-body", b"200"),
        ("async", b"202"),
        ("not-json", b"400"),
        ("too-deep", b"400"),
        ("no-key", b"401"),
        ("bad-key", b"401"),
        ("not-granted", b"403"),
        ("no-function", b"404"),
        ("too-large-declared", b"413"),
        ("schema", b"422"),
        ("function-raises", b"500"),
        ("quarantined", b"503"),
        ("timeout", b"504"),
        ("get", b"405"),
        ("head", b"405"),
    ],
)
def test_direct_answers_are_the_asgi_answers(
    direct_node: LiveNode, shape: str, status: bytes
) -> None:
    """Each answer the invoke route gives, served directly and through ASGI: the same
    bytes (date and request id aside) and the same connection kept or closed."""
    node = direct_node
    key = node.admin_key
    requests = {
        "ok": _request(key=key),
        "ok-close": _request(key=key, extra="Connection: close\r\n"),
        "ok-1.0": _request(key=key, version="1.0"),
        "ok-1.0-keep-alive": _request(key=key, version="1.0", extra="Connection: keep-alive\r\n"),
        "ok-no-body": _request(key=key, body=b"", length=""),
        "async": _request(key=key, extra="Prefer: respond-async\r\n"),
        "not-json": _request(key=key, body=b"{nope"),
        "too-deep": _request(key=key, body=b"[" * 200 + b"]" * 200),
        "no-key": _request(),
        "bad-key": _request(key="dj_nope_" + "x" * 40),
        "not-granted": _request(key=_key(node, ["direct-schema"])),
        "no-function": _filler(node),
        "too-large-declared": _request(
            path="/v1/functions/direct-schema/invoke", key=key, body=b"", length="4096"
        ),
        "schema": _request(path="/v1/functions/direct-schema/invoke", key=key, body=b"{}"),
        "function-raises": _request(key=key, body=b'{"op": "raise", "text": "x"}'),
        "quarantined": b"",  # made below
        "timeout": _request(key=key, body=b'{"op": "sleep", "s": 3}'),
        "get": _request(method="GET", key=key, body=b""),
        "head": _request(method="HEAD", key=key, body=b""),
    }
    request = requests[shape]
    if shape == "quarantined":
        name = f"direct-quar-{secrets.token_hex(3)}"
        d = Path(node.data_dir) / name
        d.mkdir()
        (d / "donjon.yaml").write_text(
            f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n"
        )
        (d / "main.py").write_text("def handler(event, context):\n    return {}\n")
        node.deploy(d)
        with node.client() as c:
            r = c.post(f"/v1/functions/{name}/quarantine", json={"reason": "review"})
            assert r.status_code in (200, 201), r.text
        request = _request(path=f"/v1/functions/{name}/invoke", key=key, body=b"{}")
    answer = _same_both_ways(node, request, head_only=shape == "head")
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:300]
    assert len(re.findall(rb"\r\nx-request-id: ", answer)) == 1, answer[:300]


def test_rate_refusal_is_the_asgi_refusal_with_its_retry_after(direct_node: LiveNode) -> None:
    """A 429 (the caller's rate spent) served directly: the ASGI path's bytes, with a
    Retry-After, and the connection kept (it rests; see the next test)."""
    node = direct_node
    key = _key(node, ["probe-warm"], rate="1/hour", burst=1)
    assert _direct(node, _request(key=key))[0].startswith(b"HTTP/1.1 200 ")
    answer = _same_both_ways(node, _request(key=key))
    assert answer.startswith(b"HTTP/1.1 429 "), answer[:300]
    assert re.search(rb"\r\nretry-after: [0-9]+\r\n", answer), answer[:300]


def test_connection_rests_after_a_direct_429(direct_node: LiveNode) -> None:
    """After a 429 served directly, the connection's next request (sent at once) is not
    read before the rest is over (at least half of DONJON_REFUSAL_HOLD_S), then served:
    a flood on kept-alive connections costs one refusal per connection and rest."""
    node = direct_node
    key = _key(node, ["probe-warm"], rate="1/hour", burst=1)
    conn = _Conn(_tls(node))
    try:
        conn.s.sendall(_request(key=key))
        assert conn.response().startswith(b"HTTP/1.1 200 ")
        conn.s.sendall(_request(key=key))
        assert conn.response().startswith(b"HTTP/1.1 429 ")
        sent = time.monotonic()
        conn.s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = conn.response()
        waited = time.monotonic() - sent
    finally:
        conn.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    # A lower bound: the rest is the server's own doing, however loaded the machine.
    assert waited >= HOLD_S * 0.5 - 0.05, waited


# --- framing attacks ---------------------------------------------------------------------


def _smuggled(node: LiveNode) -> bytes:
    """A request a front end and the gateway might frame differently, hiding a second one."""
    return _request(path="/v1/functions/direct-none/invoke", body=b"{}", key=node.admin_key)


@pytest.mark.parametrize(
    "attack",
    [
        "cl-and-te",
        "te-and-cl",
        "two-lengths-differ",
        "two-lengths-same",
        "negative-length",
        "huge-length",
        "length-with-sign",
        "obs-fold",
        "te-obs-fold",
    ],
)
def test_smuggling_is_answered_as_asgi_answers(direct_node: LiveNode, attack: str) -> None:
    """Request smuggling attempts on the invoke route: refused with uvicorn's 400 and the
    close, or else answered as through ASGI; the hidden request is never served."""
    node = direct_node
    hidden = _smuggled(node)
    key = node.admin_key
    body = b'{"op": "echo"}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    requests = {
        "cl-and-te": _request(
            key=key,
            body=chunked + hidden,
            length=str(len(chunked)),
            extra="Transfer-Encoding: chunked\r\n",
        ),
        "te-and-cl": _request(
            key=key,
            body=chunked + hidden,
            length="",
            extra=f"Transfer-Encoding: chunked\r\nContent-Length: {len(chunked) + len(hidden)}\r\n",
        ),
        "two-lengths-differ": _request(
            key=key, body=body + hidden, extra=f"Content-Length: {len(body) + len(hidden)}\r\n"
        ),
        "two-lengths-same": _request(key=key, body=body, extra=f"Content-Length: {len(body)}\r\n"),
        "negative-length": _request(key=key, body=body, length="-1"),
        "huge-length": _request(key=key, body=body, length="99999999999999999999999"),
        "length-with-sign": _request(key=key, body=body, length=f"+{len(body)}"),
        "obs-fold": _request(key=key, body=body, extra="X-Folded: a\r\n b\r\n"),
        "te-obs-fold": _request(
            key=key, body=chunked, length="", extra="Transfer-Encoding: identity\r\n chunked\r\n"
        ),
    }
    answer, after = _direct(node, requests[attack])
    if answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"):
        # Refused by the parser before any route sees it: uvicorn's own 400, then the close.
        assert answer.endswith(b"connection: close\r\n\r\nBad Request\n"), answer
        assert after == b"", after
    else:  # framed somehow: then exactly as through ASGI, and the hidden request unserved
        assert _normal((answer, after)[0]) == _normal(_asgi(node, requests[attack])[0])
        assert b"direct-none" not in answer + after, (answer, after)


def test_pipelined_requests_of_mixed_kinds_are_answered_in_order(direct_node: LiveNode) -> None:
    """Five requests of different kinds in one write: answered in order, each as if sent
    alone (the first directly, the others behind it through ASGI), then the close."""
    node = direct_node
    key = node.admin_key
    batch = [
        _request(key=key, body=b'{"op": "echo", "n": 1}'),
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
        _request(key=key, body=b"{nope"),
        _filler(node),
        _request(key=key, body=b'{"op": "echo", "n": 2}', extra="Connection: close\r\n"),
        _request(key=key, body=b'{"op": "echo", "n": 3}'),  # after the close: never served
    ]
    conn = _Conn(_tls(node))
    try:
        conn.s.sendall(b"".join(batch))
        answers = [conn.response() for _ in range(5)]
        assert conn.response() == b""  # closed after the fifth, the sixth unread
    finally:
        conn.close()
    statuses = [a.split(b"\r\n", 1)[0] for a in answers]
    assert [s[9:12] for s in statuses] == [b"200", b"200", b"400", b"404", b"200"], statuses
    assert answers[0].endswith(b'{"op":"echo","n":1}'), answers[0][-100:]
    assert answers[4].endswith(b'{"op":"echo","n":2}'), answers[4][-100:]
    assert b"\r\nconnection: close\r\n" in answers[4]


def test_request_behind_a_running_direct_call_waits_its_turn(direct_node: LiveNode) -> None:
    """A request sent while a direct call runs is read, queued and answered after it."""
    node = direct_node
    key = node.admin_key
    conn = _Conn(_tls(node))
    try:
        conn.s.sendall(_request(key=key, body=b'{"op": "sleep", "s": 0.5}'))
        conn.s.sendall(_request(key=key, body=b'{"op": "echo", "n": 9}'))
        first, second = conn.response(), conn.response()
    finally:
        conn.close()
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b'{"slept":0.5}'), first
    assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(b'"n":9}'), second


def _invocations(node: LiveNode, name: str) -> int:
    """How many calls of `name` the audit log holds."""
    with node.client() as c:
        r = c.get("/v1/audit", params={"n": 5000})
    assert r.status_code == 200, r.text
    return sum(
        1
        for rec in r.json()
        if rec["action"] == "function.invoke" and rec["target"].startswith(f"{name}@")
    )


def test_short_body_then_silence_is_refused_at_the_body_deadline(direct_node: LiveNode) -> None:
    """A body shorter than its Content-Length (its first bytes a whole JSON document),
    then nothing: 408 and the close once the body stalls (DONJON_BODY_TIMEOUT_S), as
    through ASGI; the function is never run on the part that came."""
    node = direct_node
    calls = _invocations(node, "probe-warm")
    request = _request(key=node.admin_key, body=b'{"op": "echo"}', length="100")
    answer = _same_both_ways(node, request)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert _invocations(node, "probe-warm") == calls


def test_huge_body_is_refused_without_being_read(direct_node: LiveNode) -> None:
    """A 100 MB body announced: 413 at once, before the body is sent, and the same bytes
    as through ASGI; the connection then reads the rest and drops it, or closes."""
    node = direct_node
    request = _request(key=node.admin_key, body=b"", length=str(100 * 1024 * 1024))
    answer = _same_both_ways(node, request)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    # The answer came with none of the body sent: it was refused from the head alone.


def test_client_leaving_mid_call_leaves_the_node_serving(direct_node: LiveNode) -> None:
    """Clients that close their connections while their calls run (more of them than the
    function's concurrency): each call ends and gives its slot back, the next callers are
    served, and the server logs no error for them."""
    node = direct_node
    log = Path(node.data_dir) / "serve.log"
    before = log.stat().st_size
    for _ in range(6):  # the probe's concurrency is 4
        conn = _Conn(_tls(node))
        conn.s.sendall(_request(key=node.admin_key, body=b'{"op": "sleep", "s": 0.3}'))
        conn.close()
    for n in range(6):
        answer = _direct(node, _request(key=node.admin_key, body=b'{"op": "echo", "n": %d}' % n))
        assert answer[0].startswith(b"HTTP/1.1 200 "), answer[0][:300]
    with log.open("rb") as f:
        f.seek(before)
        written = f.read()
    assert b"Exception in ASGI application" not in written, written[-3000:]


def test_direct_route_declines_expect_and_upgrade(direct_node: LiveNode) -> None:
    """Expect: 100-continue and an Upgrade go through ASGI: the interim 100 then the
    answer, and the upgrade served as plain HTTP, as before."""
    node = direct_node
    conn = _Conn(_tls(node))
    try:
        body = b'{"op": "echo", "e": 1}'
        conn.s.sendall(
            _request(
                key=node.admin_key,
                body=b"",
                length=str(len(body)),
                extra="Expect: 100-continue\r\n",
            )
        )
        interim = conn.response(head_only=True)
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        conn.s.sendall(body)
        answer = conn.response()
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'"e":1}'), answer
    finally:
        conn.close()
    upgrade = _request(key=node.admin_key, extra="Connection: Upgrade\r\nUpgrade: websocket\r\n")
    assert _same_both_ways(node, upgrade).startswith(b"HTTP/1.1 200 ")


def test_plain_json_answer_is_one_record_of_head_and_body(direct_node: LiveNode) -> None:
    """The direct route writes head and body as one buffer: the first read off the
    socket after a request carries the whole answer (one TLS record)."""
    node = direct_node
    conn = _Conn(_tls(node))
    try:
        conn.s.sendall(_request(key=node.admin_key))
        first = conn.s.recv(65536)
    finally:
        conn.close()
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b'{"op":"echo"}'), first
