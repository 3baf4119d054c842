"""More attacks on a keyed caller's kept plan (gateway/call_plan.py) and the invoke route's
own send (gateway/hot_route.py), by a reviewer who did not build them.

Each plan attack warms the key's plan, changes what the plan was made from in a way
test_attack_call_plan.py does not (a role removed, a key rotated, a key's scope, a
quarantine, a principal throttle, a function that is gone), then calls again: the very
next call answers as the change says. The route attacks speak raw HTTP/1.1 over TLS and
check what the hot route itself writes: framing, keep-alive, the headers every answer
carries, and bodies in the encodings `json.loads` accepts, answered as `json.loads` reads
them.
"""

from __future__ import annotations

import codecs
import json
import secrets
import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import LiveNode, fresh_source
from sec_support import assert_problem, audit_records

_ECHO = {"op": "echo", "text": "d\u00e9j\u00e0 \u2603 \U0001f600"}


def _call(node: LiveNode, name: str, key: str, event: Any = None) -> httpx.Response:
    return node.invoke(name, _ECHO if event is None else event, key=key, source=fresh_source())


def _role(node: LiveNode, name: str, functions: list[str]) -> None:
    statement = {"effect": "allow", "actions": ["function:invoke"], "resources": functions}
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": name, "statements": [statement]})
    assert r.status_code in (200, 201), r.text


def _deploy(node: LiveNode, root: Path, name: str) -> None:
    d = root / f"{name}-{secrets.token_hex(3)}"
    d.mkdir()
    (d / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\nisolation: warm\n"
    )
    (d / "main.py").write_text("def handler(event, context):\n    return {'ok': True}\n")
    node.deploy(d)


def test_removed_role_refuses_the_warm_key(node: LiveNode) -> None:
    """A custom role removed (`--force`, its key still live) after its key's calls: the
    key's next call is 403, audited as a role that does not exist (the kept plan's allow
    is not reused)."""
    role = f"sec-more-gone-{secrets.token_hex(3)}"
    _role(node, role, ["probe-warm"])
    key = str(node.create_key(f"more-{secrets.token_hex(3)}", role)["key"])
    for _ in range(2):
        assert _call(node, "probe-warm", key).status_code == 200
    with node.client() as c:
        gone = c.delete(f"/v1/roles/{role}", params={"force": "true"})  # its key still lives
        assert gone.status_code in (200, 204), gone.text
    r = _call(node, "probe-warm", key)
    assert_problem(r, 403)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"
    assert "does not exist" in record["detail"]["reason"], record


def test_denied_caller_cannot_tell_a_function_exists(node: LiveNode, tmp_path: Path) -> None:
    """A key without invoke on a function gets the same 403 for it (kept plan or not),
    for a name that never existed and for the function once removed; only a caller
    allowed on every name learns of the removal (404)."""
    name = f"sec-more-hidden-{secrets.token_hex(3)}"
    _deploy(node, tmp_path, name)
    role = f"sec-more-other-{secrets.token_hex(3)}"
    _role(node, role, ["probe-warm"])
    key = str(node.create_key(f"more-{secrets.token_hex(3)}", role)["key"])
    wide = str(node.create_key(f"more-{secrets.token_hex(3)}", "invoker")["key"])
    assert _call(node, name, wide).status_code == 200
    missing = f"sec-more-never-{secrets.token_hex(3)}"

    def refusal(function: str) -> dict[str, Any]:
        body = assert_problem(_call(node, function, key), 403)
        return {k: v for k, v in body.items() if k not in ("instance", "request_id")}

    seen = [refusal(name), refusal(name), refusal(missing)]  # the 2nd finds a kept plan
    with node.client() as c:
        assert c.delete(f"/v1/functions/{name}").status_code in (200, 204)
    seen.append(refusal(name))
    assert all(s == seen[0] for s in seen), seen
    assert_problem(_call(node, name, wide), 404)


def test_rotated_key_old_secret_is_refused_and_new_one_served(node: LiveNode) -> None:
    """A key rotated with no overlap: its old secret (whose plan is warm) is 401 at once,
    the new secret is served."""
    created = node.create_key(f"more-{secrets.token_hex(3)}", "invoker")
    old = str(created["key"])
    for _ in range(2):
        assert _call(node, "probe-warm", old).status_code == 200
    with node.client() as c:
        r = c.post(f"/v1/keys/{created['id']}/rotate", json={"overlap_s": 0})
    assert r.status_code in (200, 201), r.text
    assert_problem(_call(node, "probe-warm", old), 401)
    assert _call(node, "probe-warm", str(r.json()["key"])).status_code == 200


def test_scoped_key_plan_does_not_reach_another_function(node: LiveNode) -> None:
    """A key scoped to one function, warm on it: another function its role allows is
    still refused (403), before and after, and the scoped one still served."""
    key = str(node.create_key(f"more-{secrets.token_hex(3)}", "invoker", ["probe-warm"])["key"])
    for _ in range(2):
        assert _call(node, "probe-warm", key).status_code == 200
        assert_problem(_call(node, "probe", key, {"op": "echo"}), 403)
    assert _call(node, "probe-warm", key).status_code == 200


def test_quarantine_and_throttle_refuse_the_warm_key(node: LiveNode, tmp_path: Path) -> None:
    """A principal throttle (429 once its bucket is spent) and a function quarantine (503,
    the very next call) stop a key whose plan says it may invoke."""
    name = f"sec-more-quar-{secrets.token_hex(3)}"
    _deploy(node, tmp_path, name)
    created = node.create_key(f"more-{secrets.token_hex(3)}", "invoker", [name])
    key = str(created["key"])
    for _ in range(2):
        assert _call(node, name, key).status_code == 200
    subject = f"principal:key:{created['id']}"
    with node.client() as c:
        r = c.put(f"/v1/throttles/{subject}", json={"reason": "review"})
        assert r.status_code in (200, 201), r.text
    # The throttle's bucket (DONJON_MONITOR_THROTTLE, 10/minute) is spent within 11 calls.
    statuses = [_call(node, name, key).status_code for _ in range(11)]
    assert statuses[-1] == 429 and set(statuses) <= {200, 429}, statuses
    with node.client() as c:
        assert c.delete(f"/v1/throttles/{subject}").status_code in (200, 204)
        r = c.post(f"/v1/functions/{name}/quarantine", json={"reason": "review"})
        assert r.status_code in (200, 201), r.text
    r = _call(node, name, key)
    assert r.status_code == 503 and r.json()["errorType"] == "Function.Quarantined", r.text


# --- the hot route's own answers, over raw HTTP/1.1 ---------------------------------


def _tls(node: LiveNode) -> ssl.SSLSocket:
    port = int(node.url.rsplit(":", 1)[1])
    raw = socket.create_connection(
        ("127.0.0.1", port), timeout=60, source_address=(fresh_source(), 0)
    )
    return node.tls.wrap_socket(raw, server_hostname="127.0.0.1")


def _request(node: LiveNode, method: str, path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {node.admin_key}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


class _Reader:
    """Responses read off one connection, framed by their Content-Length."""

    def __init__(self, s: ssl.SSLSocket) -> None:
        self.s = s
        self.buf = b""

    def _more(self) -> None:
        chunk = self.s.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-response: {self.buf[:300]!r}")
        self.buf += chunk

    def response(self, head_only: bool = False) -> tuple[str, list[tuple[str, str]], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = [(k.strip().lower(), v.strip()) for k, v in (x.split(":", 1) for x in lines)]
        lengths = [v for k, v in headers if k == "content-length"]
        assert len(lengths) == 1, headers  # framed once, never chunked as well
        assert not [v for k, v in headers if k == "transfer-encoding"], headers
        size = 0 if head_only else int(lengths[0])
        while len(self.buf) < size:
            self._more()
        body, self.buf = self.buf[:size], self.buf[size:]
        return status, headers, body


def test_hot_route_answers_are_framed_and_keep_the_connection(node: LiveNode) -> None:
    """On one kept-alive connection: a 200, a 404 problem and a 413 problem from the hot
    route, each framed by one exact Content-Length and naming its request, the 200 with a
    function response's nosniff and CSP; HEAD is Starlette's (405); `Connection: close`
    is honoured, and nothing follows the HEAD's head."""
    path = "/v1/functions/probe-warm/invoke"
    s = _tls(node)
    try:
        reader = _Reader(s)
        s.sendall(_request(node, "POST", path, json.dumps(_ECHO).encode()))
        ok = reader.response()
        s.sendall(_request(node, "POST", "/v1/functions/sec-more-nope/invoke", b"{}"))
        missing = reader.response()
        s.sendall(_request(node, "POST", path, b"[" * 200 + b"]" * 200))
        deep = reader.response()
        s.sendall(_request(node, "HEAD", path, b"", "Connection: close\r\n"))
        head = reader.response(head_only=True)
        s.settimeout(30)
        assert s.recv(1) == b""  # closed as asked, nothing after the HEAD's head
    finally:
        s.close()
    assert ok[0] == "HTTP/1.1 200 OK" and json.loads(ok[2]) == _ECHO, ok
    assert ("content-type", "application/json") in ok[1]
    assert ("x-content-type-options", "nosniff") in ok[1], ok[1]
    assert "content-security-policy" in {k for k, _ in ok[1]}, ok[1]
    assert missing[0].startswith("HTTP/1.1 404 ") and json.loads(missing[2])["status"] == 404
    assert deep[0].startswith("HTTP/1.1 400 ") and json.loads(deep[2])["status"] == 400
    for _, headers, _ in (missing, deep):
        assert ("content-type", "application/problem+json") in headers
    assert head[0].startswith("HTTP/1.1 405 ") and ("connection", "close") in head[1], head
    for status, headers, _ in (ok, missing, deep, head):
        assert len([k for k, _ in headers if k == "x-request-id"]) == 1, (status, headers)
        assert ("connection", "close") not in headers or status == head[0], headers


def _encoded(codec: str) -> bytes:
    text = json.dumps(_ECHO, ensure_ascii=False)
    if codec == "utf-16-bom-and-feff":
        return text.replace("{", "\ufeff{", 1).encode("utf-16")
    if codec == "utf-16-lone-surrogate":
        return '{"op": "echo", "text": "\ud800"}'.encode("utf-16-le", "surrogatepass")
    return text.encode(codec)


@pytest.mark.parametrize(
    "codec",
    [
        "utf-8",
        "utf-8-sig",
        "utf-16",
        "utf-16-le",
        "utf-16-be",
        "utf-32",
        "utf-32-le",
        "utf-32-be",
        "utf-16-bom-and-feff",
        "utf-16-lone-surrogate",
    ],
)
def test_encoded_bodies_are_read_as_json_loads_reads_them(node: LiveNode, codec: str) -> None:
    """A body in any encoding json.loads detects (BOMs, UTF-16/32, a BOM then U+FEFF, a
    lone surrogate) is accepted exactly when json.loads takes it, as the same value."""
    body = _encoded(codec)
    with node.client(source=fresh_source()) as c:
        r = c.post("/v1/functions/probe-warm/invoke", content=body)
    try:
        expected = json.loads(body)
    except ValueError:
        assert_problem(r, 400)
        return
    assert r.status_code == 200, r.text
    assert json.loads(r.content) == expected


def test_doubled_bom_body_is_refused_not_blamed_on_the_function(node: LiveNode) -> None:
    """A body behind two UTF-8 byte order marks, which json.loads (and so the function's
    runtime) refuses, is a 400 from the gateway: the function is never run on it, and no
    500 "the function failed" is recorded against it."""
    body = codecs.BOM_UTF8 * 2 + json.dumps(_ECHO).encode()
    with pytest.raises(json.JSONDecodeError, match="Expecting value"):
        json.loads(body)
    with node.client(source=fresh_source()) as c:
        r = c.post("/v1/functions/probe-warm/invoke", content=body)
    assert_problem(r, 400)
    ran = [
        rec
        for rec in audit_records(node, r.headers["x-request-id"])
        if rec["action"] == "function.invoke"
    ]
    assert ran == [], ran
    with node.client(source=fresh_source()) as c:  # one mark is JSON's own: still taken
        assert c.post("/v1/functions/probe-warm/invoke", content=body[3:]).status_code == 200
