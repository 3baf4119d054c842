"""Liveness and readiness (gateway/readiness.py) on real nodes: what a load balancer or
Kubernetes reads from `GET /healthz` and `GET /readyz`, with no credential, while the
node serves, while its audit writer is killed again and again, and while it is at its
in-flight bound. (A full data dir: tests/security/test_attack_disk_full.py.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from async_support import bundle
from crash_support import audit_writers, deploy
from donjon.audit.remote import GIVEN_UP_RETRY_S, RESTARTS
from harness import LiveNode, start_node

#: Each call appends a line to its sandbox's /tmp and answers how many there are: the
#: file, read from the host, says how many calls ran in that sandbox.
COUNTER = """\
def handler(event, context):
    with open("/tmp/ran", "a") as f:
        f.write("x\\n")
    with open("/tmp/ran") as f:
        return {"ran": len(f.readlines())}
"""
SLEEPER = "import time\ndef handler(event, context):\n    time.sleep(20)\n    return event\n"


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


def serve_log(node: LiveNode) -> str:
    return (node.data_dir / "serve.log").read_text(errors="replace")


def runs_seen(node: LiveNode) -> list[int]:
    """The line counts of /tmp/ran in the node's sandboxes, read through /proc (root)."""
    seen = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        with contextlib.suppress(OSError):
            if b"boot.py" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            seen.append(len(Path(f"/proc/{pid}/root/tmp/ran").read_text().splitlines()))
    return seen


def test_a_serving_node_is_alive_and_ready_to_anyone(node: LiveNode) -> None:
    """Both answer 200 without a credential, say only their verdict, and are not to be
    cached; both are in the API's document, public."""
    health = probe(node, "/healthz")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    ready = probe(node, "/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready"}
    for r in (health, ready):
        assert r.headers["cache-control"] == "no-store"
    with node.client() as c:
        paths = c.get("/openapi.json").json()["paths"]
    for path in ("/healthz", "/readyz"):
        assert paths[path]["get"]["security"] == []
        assert set(paths[path]["get"]["responses"]) >= {"200", "503"}


@pytest.mark.slow  # a node of its own, its writer killed six times
def test_a_writer_killed_too_often_makes_the_node_unready_then_not_alive(
    tmp_path: Path,
) -> None:
    """Each death of the audit writer makes the node unready until a new writer runs,
    then ready again; past RESTARTS deaths in a minute the node stops restarting it:
    unready for good, and /healthz fails, since only a restart of the node helps. A call
    then is refused with a 503 before it runs (its function's sandbox saw no new call),
    and the log says why the node is not ready; the probes do not."""
    node = start_node(tmp_path / "node")
    try:
        counter = bundle(tmp_path / "src", "counter", COUNTER, "isolation: warm\n")
        assert deploy(node, counter).status_code == 201
        r = node.invoke("counter", {})
        assert r.status_code == 200 and r.json() == {"ran": 1}, r.text
        for death in range(RESTARTS):
            (writer,) = until(lambda: audit_writers(node), "an audit writer")
            os.kill(writer, signal.SIGKILL)
            unready = until(
                lambda: probe(node, "/readyz").status_code == 503, f"unready after {death + 1}"
            )
            assert unready
            until(lambda: probe(node, "/readyz").status_code == 200, "ready again")
            assert probe(node, "/healthz").status_code == 200
            assert audit_writers(node) != [writer]
        assert "readiness: not ready (audit writer: restarting)" in serve_log(node)
        assert "readiness: ready again" in serve_log(node)
        (writer,) = audit_writers(node)
        os.kill(writer, signal.SIGKILL)
        until(lambda: probe(node, "/healthz").status_code == 503, "liveness to fail")
        assert probe(node, "/healthz").json()["status"] == "failing"
        ready = probe(node, "/readyz")
        assert ready.status_code == 503 and ready.json() == {"status": "not ready"}
        assert "readiness: not ready (audit writer: failed)" in serve_log(node)
        assert audit_writers(node) == []
        r = node.invoke("counter", {})
        assert r.status_code == 503, r.text
        assert "audit log is unavailable" in r.json()["detail"], r.text
        assert "refused before it ran" in r.json()["detail"], r.text
        assert r.headers["retry-after"] == str(GIVEN_UP_RETRY_S)
        assert runs_seen(node) == [1], "the refused call ran in the sandbox"
    finally:
        node.stop()


@pytest.mark.slow  # a node of its own
def test_the_probes_are_answered_at_the_in_flight_bound(tmp_path: Path) -> None:
    """At the node's in-flight bound other requests get the capacity 503; the probes are
    a balancer's questions, not load, and say the node is alive and ready."""
    node = start_node(tmp_path / "node", {"DONJON_MAX_IN_FLIGHT": "2"})
    holders: list[threading.Thread] = []
    stop = threading.Event()
    try:
        manifest = "isolation: warm\ntimeout_s: 30\nlimits: {concurrency: 2}\n"
        sleeper = bundle(tmp_path / "src", "sleeper", SLEEPER, manifest)
        assert deploy(node, sleeper).status_code == 201

        def hold() -> None:
            """One call in flight: sent again while the bound sheds it (the test's own
            requests count too), until it is taken and sleeps."""
            with contextlib.suppress(httpx.HTTPError):
                while not stop.is_set() and node.invoke("sleeper", {}).status_code == 503:
                    time.sleep(0.05)

        for _ in range(2):
            holders.append(threading.Thread(target=hold, daemon=True))
            holders[-1].start()

        def at_capacity() -> bool:
            with node.client() as c:
                return c.get("/v1/functions").status_code == 503

        until(at_capacity, "the in-flight bound")
        assert probe(node, "/healthz").status_code == 200
        assert probe(node, "/readyz").status_code == 200
        assert at_capacity()
    finally:
        stop.set()
        node.stop()
        for holder in holders:
            holder.join(30)
