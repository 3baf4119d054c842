"""Liveness and readiness (gateway/readiness.py) on real nodes: what a load balancer or
Kubernetes reads from `GET /healthz` and `GET /readyz`, with no credential, while the
node serves and while its audit writer is killed again and again. (A full data dir:
tests/security/test_attack_disk_full.py.)
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from async_support import bundle
from crash_support import audit_writers, deploy
from donjon.audit.remote import RESTARTS
from harness import LiveNode, start_node

READY = {"status": "ready", "audit": "ok", "storage": "ok", "limits": "local"}


def probe(node: LiveNode, path: str) -> httpx.Response:
    """A probe as a balancer sends it: no credential."""
    with node.client(key="") as c:
        return c.get(path)


def until(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_serving_node_is_alive_and_ready_to_anyone(node: LiveNode) -> None:
    """Both answer 200 without a credential, name only checks and states, and are not
    to be cached."""
    health = probe(node, "/healthz")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok" and health.json()["failing"] == []
    ready = probe(node, "/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == READY
    for r in (health, ready):
        assert r.headers["cache-control"] == "no-store"
    with node.client() as c:  # both are described (public) in the API's document
        paths = c.get("/openapi.json").json()["paths"]
    assert paths["/readyz"]["get"]["security"] == []
    assert set(paths["/readyz"]["get"]["responses"]) >= {"200", "503"}


@pytest.mark.slow  # a node of its own, its writer killed six times
def test_a_writer_killed_too_often_makes_the_node_unready_then_not_alive(
    tmp_path: Path,
) -> None:
    """Each death of the audit writer makes the node unready until a new writer runs
    (calls are refused meanwhile), then ready again; past RESTARTS deaths in a minute the
    node stops restarting it: unready for good, and /healthz fails, since only a restart
    of the node helps. Calls meanwhile get a 503 with Retry-After, not a 500."""
    node = start_node(tmp_path / "node")
    try:
        echo = bundle(tmp_path / "src", "echo", "def handler(event, context):\n    return event\n")
        assert deploy(node, echo).status_code == 201
        seen: set[str] = set()
        for death in range(RESTARTS):
            (writer,) = until(lambda: audit_writers(node), "an audit writer")
            os.kill(writer, signal.SIGKILL)

            def not_ready() -> dict[str, Any] | None:
                r = probe(node, "/readyz")
                return None if r.status_code == 200 else r.json()

            seen.add(until(not_ready, f"unready after death {death + 1}")["audit"])
            until(lambda: probe(node, "/readyz").status_code == 200, "ready again")
            assert probe(node, "/healthz").status_code == 200
            assert audit_writers(node) != [writer]
        assert seen == {"restarting"}
        (writer,) = audit_writers(node)
        os.kill(writer, signal.SIGKILL)
        gone = until(lambda: probe(node, "/healthz").status_code == 503, "liveness to fail")
        assert gone
        health = probe(node, "/healthz").json()
        assert health["status"] == "failing" and health["failing"] == ["audit"]
        ready = probe(node, "/readyz")
        assert ready.status_code == 503
        assert ready.json()["audit"] == "failed" and ready.json()["status"] == "not ready"
        assert audit_writers(node) == []
        # A call now is refused before it runs, as the busy answer it is: nothing recorded.
        r = node.invoke("echo", {"n": 1})
        assert r.status_code == 503, r.text
        assert "audit log is unavailable" in r.json()["detail"], r.text
        assert r.headers["retry-after"] == "1"
    finally:
        node.stop()
