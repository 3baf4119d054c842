"""Request bodies over a function's limit (issue 15, point 3): refused with 413 before any
sandbox is touched, on every way in, and from the declared length or as a chunked body
arrives; a manifest cannot ask for more than the node allows."""

from __future__ import annotations

import json
import secrets
import selectors
import socket
import ssl
from pathlib import Path
from typing import Any

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from donjon.bundle import build_bundle
from donjon.bundle.archive import pack
from harness import LiveNode, fresh_source
from sec_support import assert_problem, audit_records

SMALL = "rq-small"  # limits.body: 64KiB
ECHO = "rq-echo"  # no limits.body: the 1 MiB default
CALLER = "rq-caller"  # may context.invoke rq-small
LIMIT = 64 * 1024
LAMBDA_PATH = "/2015-03-31/functions/{}/invocations"

SIZE_OF = "def handler(event, context):\n    return {'size': len(json.dumps(event))}\n"
CALLS = (
    "def handler(event, context):\n"
    "    try:\n"
    "        return {'result': context.invoke(event['to'], event.get('event'))}\n"
    "    except context.InvokeError as e:\n"
    "        return {'kind': e.kind, 'reason': e.reason}\n"
)


def _write(root: Path, name: str, code: str, extra: str = "") -> Path:
    d = root / f"{name}-{secrets.token_hex(3)}"
    d.mkdir()
    (d / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n{extra}"
    )
    (d / "main.py").write_text("import json\n" + code)
    return d


def _deploy(node: LiveNode, directory: Path) -> Any:
    _, archive = build_bundle(directory)
    with node.client() as c:
        return c.post(
            "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
        )


@pytest.fixture(scope="module")
def functions(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A function taking 64 KiB (invoke and an http trigger), one at the default, a caller."""
    root = tmp_path_factory.mktemp("request-limits")
    plan = [
        (
            SMALL,
            SIZE_OF,
            "limits: {body: 64KiB}\n"
            "triggers:\n  - http: {path: /rq-small, methods: [POST], auth: key}\n",
        ),
        (ECHO, SIZE_OF, ""),
        (CALLER, CALLS, f"permissions: {{invoke: [{SMALL}]}}\n"),
    ]
    for name, code, extra in plan:
        r = _deploy(node, _write(root, name, code, extra))
        assert r.status_code == 201, r.text


def _ran(node: LiveNode, request_id: str) -> list[str]:
    """The functions a request ran (its `function.invoke` records)."""
    return [
        rec["target"]
        for rec in audit_records(node, request_id)
        if rec["action"] == "function.invoke"
    ]


def _port(node: LiveNode) -> int:
    return int(node.url.rsplit(":", 1)[1])


def _tls(node: LiveNode) -> ssl.SSLSocket:
    raw = socket.create_connection(
        ("127.0.0.1", _port(node)), timeout=60, source_address=(fresh_source(), 0)
    )
    return node.tls.wrap_socket(raw, server_hostname="127.0.0.1")


def _read_reply(s: ssl.SSLSocket) -> bytes:
    reply = b""
    try:
        while chunk := s.recv(65536):
            reply += chunk
    except OSError:
        pass
    return reply


def _poll(s: ssl.SSLSocket, sel: selectors.BaseSelector) -> bytes:
    """The reply so far, without waiting (b"" if none yet; TLS tickets are not a reply)."""
    if not sel.select(timeout=0):
        return b""
    s.setblocking(False)
    try:
        data = s.recv(65536)
    except (ssl.SSLWantReadError, BlockingIOError):
        return b""
    finally:
        s.settimeout(60)
    return data + _read_reply(s) if data else b""


def _head(node: LiveNode, path: str, extra: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {node.admin_key}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_declared_length_over_the_limit_is_413_before_the_body(
    node: LiveNode, functions: None
) -> None:
    """A Content-Length over limits.body is answered 413 although no byte of body was sent."""
    s = _tls(node)
    try:
        s.sendall(_head(node, f"/v1/functions/{SMALL}/invoke", "Content-Length: 200000\r\n"))
        reply = _read_reply(s)
    finally:
        s.close()
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:300]
    body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert "65536 bytes" in body["detail"] and "64 KiB" in body["detail"], body


def test_chunked_body_is_refused_once_past_the_limit(node: LiveNode, functions: None) -> None:
    """A chunked body gets its 413 while it is still arriving, well before its end."""
    s = _tls(node)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    sent = 0
    # Far more than loopback's socket buffers hold (a few MiB): a loaded machine's node
    # may read late, but the client can never send all of it unless the node reads on.
    total = 64 * 1024 * 1024
    chunk = b'"' + b"a" * (16 * 1024 - 2) + b'"'
    reply = b""
    try:
        s.sendall(_head(node, f"/v1/functions/{SMALL}/invoke", "Transfer-Encoding: chunked\r\n"))
        while sent < total and not reply:
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            reply = _poll(s, sel)
        if not reply:
            s.sendall(b"0\r\n\r\n")
            reply = _read_reply(s)
    except OSError:
        reply = reply or _read_reply(s)
    finally:
        sel.close()
        s.close()
    assert reply.startswith(b"HTTP/1.1 413 "), (sent, reply[:300])
    assert sent < total, sent
    # One answer, and the connection ends with it: the node reads no more of a body it
    # refused for its size (before, it read on until the body deadline, 60 s, and then
    # wrote a second answer, a 408, to the same request).
    head = reply.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nconnection: close" in head, reply[:300]
    assert reply.count(b"HTTP/1.1 ") == 1, reply


def test_event_over_the_default_1_mib_is_413(node: LiveNode, functions: None) -> None:
    """A function without limits.body takes 1 MiB: 1.5 MiB is refused, and it never runs."""
    with node.client() as c:
        r = c.post(f"/v1/functions/{ECHO}/invoke", content=b'"' + b"a" * (3 * 512 * 1024) + b'"')
    body = assert_problem(r, 413)
    assert "1 MiB (1048576 bytes)" in body["detail"], body
    assert _ran(node, body["request_id"]) == []
    with node.client() as c:  # under it: served
        ok = c.post(f"/v1/functions/{ECHO}/invoke", content=b'"' + b"a" * 900_000 + b'"')
    assert ok.status_code == 200 and ok.json() == {"size": 900_002}, ok.text


def test_http_trigger_body_over_the_limit_is_413(node: LiveNode, functions: None) -> None:
    """An http trigger holds its function's limits.body: 100 KiB to a 64 KiB function is 413."""
    with node.client() as c:
        r = c.post("/fn/rq-small", content=b"x" * 100_000)
    body = assert_problem(r, 413)
    assert "64 KiB" in body["detail"], body
    assert _ran(node, body["request_id"]) == []


def test_lambda_invoke_over_the_limit_is_request_too_large(node: LiveNode, functions: None) -> None:
    """The Lambda Invoke API refuses an event over limits.body as Lambda does:
    413 RequestTooLargeException, and the function never runs."""
    with node.client() as c:
        key = c.post("/v1/keys", json={"name": "rq-lambda", "role": "admin"}).json()
    payload = json.dumps({"blob": "a" * 100_000}).encode()
    url = node.url + LAMBDA_PATH.format(SMALL)
    request = AWSRequest(method="POST", url=url, data=payload)
    creds = Credentials(key["id"], key["sigv4_secret"])
    botocore.auth.SigV4Auth(creds, "lambda", "us-east-1").add_auth(request)
    with node.client("") as c:
        r = c.post(LAMBDA_PATH.format(SMALL), content=payload, headers=dict(request.headers))
    body = assert_problem(r, 413)
    assert r.headers["x-amzn-errortype"] == "RequestTooLargeException"
    assert "64 KiB" in body["message"], body
    assert _ran(node, body["request_id"]) == []


def test_context_invoke_event_over_the_callee_limit_is_refused(
    node: LiveNode, functions: None
) -> None:
    """A function passing another an event over the callee's limits.body gets InvokeError
    kind invalid naming the limit, and the callee never runs."""
    r = node.invoke(CALLER, {"to": SMALL, "event": {"blob": "a" * 100_000}})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out.get("kind") == "invalid" and "64 KiB" in out["reason"], out
    assert _ran(node, r.headers["x-request-id"]) == [f"{CALLER}@1"]


def test_manifest_body_over_the_node_maximum_is_refused_at_deploy(
    node: LiveNode, tmp_path: Path
) -> None:
    """limits.body 8MiB on a node whose maximum is 6 MiB: 422 naming both; nothing deployed."""
    r = _deploy(node, _write(tmp_path, "rq-greedy", SIZE_OF, "limits: {body: 8MiB}\n"))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    detail = r.json()["detail"]
    assert "limits.body 8MiB" in detail and "6 MiB" in detail, detail
    assert "DONJON_MAX_BODY_BYTES" in detail, detail
    with node.client() as c:
        assert c.get("/v1/functions/rq-greedy").status_code == 404


@pytest.mark.parametrize("size", ["1.5MiB", "1mb", "0KiB", "2 MiB", "01MiB", "-1B"])
def test_malformed_body_size_is_refused_at_deploy(
    node: LiveNode, tmp_path: Path, size: str
) -> None:
    """A limits.body that is not a whole number of B, KiB or MiB is refused, never guessed."""
    source = _write(tmp_path, "rq-odd", SIZE_OF, f"limits: {{body: '{size}'}}\n")
    with node.client() as c:  # packed as is: the CLI's own check would refuse it first
        r = c.post(
            "/v1/functions", content=pack(source), headers={"content-type": "application/gzip"}
        )
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert "a size must look like" in r.text, r.text
    with node.client() as c:
        assert c.get("/v1/functions/rq-odd").status_code == 404
