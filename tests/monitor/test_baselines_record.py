"""What the learned detectors need is in a real node's `function.invoke` records."""

from __future__ import annotations

from typing import Any

from harness import LiveNode


def _record(node: LiveNode, request_id: str) -> dict[str, Any]:
    with node.client() as c:
        records: list[dict[str, Any]] = c.get("/v1/audit", params={"n": 300}).json()
    (mine,) = [
        r
        for r in records
        if r["action"] == "function.invoke" and r["detail"].get("request_id") == request_id
    ]
    return mine


def test_invoke_record_names_the_client_and_memory(node: LiveNode) -> None:
    """An invoke names the caller's address (first-seen sources) and the memory limit (cost)."""
    r = node.invoke("probe", {"op": "echo"})
    assert r.status_code == 200
    detail = _record(node, r.headers["x-request-id"])["detail"]
    assert detail["client"] == "127.0.0.1" and detail["memory_mb"] == 64
    assert detail["duration_ms"] > 0


def test_http_trigger_record_names_the_client_and_memory(node: LiveNode) -> None:
    """A call through an http trigger is recorded with the same two fields."""
    with node.client() as c:
        r = c.post("/fn/sec-http/key", json={})
    detail = _record(node, r.headers["x-request-id"])["detail"]
    assert detail["client"] == "127.0.0.1" and detail["memory_mb"] == 64
