"""A flood of calls to one function is shed at once with 503, not queued without bound.

Before: every call past a function's concurrency waited (up to 5 s each, however
many), holding its request and connection, and was then refused with 429. Now at
most DONJON_MAX_QUEUED_PER_FUNCTION calls wait; the rest are answered 503 with
Retry-After from their request head alone, before the app or the body, when their API
key may invoke the function (gateway/early_shed.py), counted, and audited as one record
per caller and window, while the calls already accepted run to the end and are audited
as usual. A caller who may not invoke it learns nothing: it gets its 401 or 403.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness import LiveNode, run_cli
from shed_support import SHEDDING_ENV, audit_records, metric, saturate, slow_node, wait_for_metric

FLOOD = 12


@pytest.fixture
def shedding_node(tmp_path: Path) -> Iterator[LiveNode]:
    """A node where one call may wait per function (as long as it takes); the loop's lag
    sheds nothing (the machine's load must not decide); denials aggregate all test long."""
    with slow_node(
        tmp_path,
        "slow",
        {**SHEDDING_ENV, "DONJON_AUDIT_DENIAL_WINDOW_S": "3600"},
    ) as live:
        yield live


def test_call_flood_past_the_queue_is_shed_with_503(shedding_node: LiveNode) -> None:
    """One call running, one waiting: 12 more get 503 + Retry-After at once; the two
    accepted complete and are audited; the 12 are counted and audited in one record."""
    node = shedding_node
    answers: list[httpx.Response] = []

    def call(sleep: float) -> None:
        answers.append(node.invoke("slow", {"sleep": sleep}))

    running = threading.Thread(target=call, args=(10,))
    running.start()
    wait_for_metric(node, "donjon_sandboxes", 1, function="slow", state="busy")
    waiting = threading.Thread(target=call, args=(0,))
    waiting.start()
    wait_for_metric(node, "donjon_calls_waiting", 1)
    shed = []
    with node.client() as c:
        for _ in range(FLOOD):
            shed.append(c.post("/v1/functions/slow/invoke", content=b'{"sleep": 0}'))
        assert metric(node, "donjon_calls_waiting") == 1  # the queue never grew
    running.join(120)
    waiting.join(120)
    assert [r.status_code for r in shed] == [503] * FLOOD, shed[0].text
    assert all(int(r.headers["retry-after"]) >= 1 for r in shed)
    assert sorted(r.status_code for r in answers) == [200, 200], [r.text for r in answers]
    assert metric(node, "donjon_rate_limited_total", function="slow", limit="overload") == FLOOD
    node.stop()
    records = audit_records(node.data_dir)
    served = [r for r in records if r["action"] == "function.invoke" and r["outcome"] == "ok"]
    assert len(served) == 2
    sheds = [r for r in records if r["action"] == "node.shed"]
    assert len(sheds) == 2, sheds  # the first at once, the other 11 as one aggregate
    assert sum(r["detail"]["count"] for r in sheds) == FLOOD
    assert sheds[0]["detail"]["reason"] == "overload"
    assert sheds[0]["target"] == "/v1/functions/slow/invoke"
    assert run_cli(node.env(), "audit", "verify").returncode == 0


def _exchange(conn: ssl.SSLSocket, request: bytes) -> tuple[bytes, bytes]:
    """Send `request` on an open connection; its response's head and body."""
    conn.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"the connection closed: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, "the connection closed in a body"
        body += chunk
    return head, body


def test_shed_call_body_is_dropped_and_its_connection_serves_on(
    shedding_node: LiveNode,
) -> None:
    """A call shed from its head gets a 503 problem (Retry-After, request id) and its
    64 KiB body is read and dropped: the same connection then serves the next request.
    One that waits for 100 Continue gets the 503 and its connection is closed."""
    node = shedding_node
    answers: list[httpx.Response] = []
    threads = saturate(node, "slow", answers)
    host, port = node.url.removeprefix("https://").split(":")
    body = json.dumps({"sleep": 0, "pad": "x" * 65536}).encode()
    request = (
        f"POST /v1/functions/slow/invoke HTTP/1.1\r\nhost: {host}\r\n"
        f"authorization: Bearer {node.admin_key}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    raw = socket.create_connection((host, int(port)), timeout=30)
    with node.tls.wrap_socket(raw, server_hostname=host) as conn:
        head, problem = _exchange(conn, request + body)
        assert head.startswith(b"HTTP/1.1 503 "), head
        fields = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        }
        assert int(fields[b"retry-after"]) >= 1
        assert fields[b"content-type"] == b"application/problem+json"
        doc = json.loads(problem)
        assert doc["status"] == 503
        assert doc["detail"].startswith("overloaded: the node is shedding calls")
        assert doc["request_id"] == fields[b"x-request-id"].decode()
        head, _ = _exchange(conn, f"GET /healthz HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
        assert head.startswith(b"HTTP/1.1 200 "), head
    # One waiting for 100 Continue gets the 503 and the connection closes after it.
    raw = socket.create_connection((host, int(port)), timeout=30)
    with node.tls.wrap_socket(raw, server_hostname=host) as conn:
        head, _ = _exchange(conn, request.replace(b"\r\n\r\n", b"\r\nexpect: 100-continue\r\n\r\n"))
        assert head.startswith(b"HTTP/1.1 503 "), head
        assert b"\r\nconnection: close" in head
        assert conn.recv(1) == b""
    for thread in threads:
        thread.join(120)
    assert sorted(r.status_code for r in answers) == [200, 200]
    # Every call let through was counted out again: the function takes calls as before.
    assert node.invoke("slow", {"sleep": 0}).status_code == 200


def test_shed_tells_nothing_to_a_caller_who_may_not_invoke(shedding_node: LiveNode) -> None:
    """While `slow` sheds: no credentials, a JWT-shaped token and a revoked key get 401, a
    key without the invoke grant 403 (as when nothing sheds); a key with the grant 503."""
    node = shedding_node
    reader = node.create_key("shed-reader", "metrics")["key"]
    other = node.create_key("shed-other", "invoker", functions=["other"])["key"]
    invoker = node.create_key("shed-invoker", "invoker", functions=["slow"])["key"]
    revoked = node.create_key("shed-revoked", "invoker")
    with node.client() as c:
        assert c.delete(f"/v1/keys/{revoked['id']}").status_code == 204
    answers: list[httpx.Response] = []
    threads = saturate(node, "slow", answers)
    with node.client("") as anonymous:
        nothing = anonymous.post("/v1/functions/slow/invoke", content=b"{}")
        jwt = anonymous.post(
            "/v1/functions/slow/invoke",
            headers={"authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln"},
            content=b"{}",
        )
        unknown = anonymous.post("/v1/functions/nosuch/invoke", content=b"{}")
    refused = {key: node.invoke("slow", {}, key=key) for key in (revoked["key"], reader, other)}
    granted = node.invoke("slow", {}, key=invoker)
    for thread in threads:
        thread.join(120)
    assert sorted(r.status_code for r in answers) == [200, 200]
    for r in (nothing, jwt, unknown, refused[revoked["key"]]):
        assert r.status_code == 401, r.text
        assert r.json()["detail"] == "missing, invalid or revoked credentials"
    for key in (reader, other):
        assert refused[key].status_code == 403, refused[key].text
        assert "retry-after" not in refused[key].headers
    assert granted.status_code == 503, granted.text
    assert int(granted.headers["retry-after"]) >= 1
    assert "slow" not in granted.text
    assert metric(node, "donjon_rate_limited_total", function="slow", limit="overload") == 1
    node.stop()
    sheds = [r for r in audit_records(node.data_dir) if r["action"] == "node.shed"]
    assert [r["actor"].split(":")[0] for r in sheds] == ["key"], sheds
    assert sheds[0]["detail"]["reason"] == "overload"
