"""The learned detectors on a real node: a deploy that breaks a function, and a key
calling a function it never called once its learning window is over."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import LiveNode, start_node

LEARNING_S = 3.0
_OK = "def handler(event, context):\n    return {'ok': True}\n"
_BROKEN = "def handler(event, context):\n    raise RuntimeError('this version is broken')\n"


def _function(root: Path, name: str, code: str, tag: str = "v1") -> Path:
    directory = root / f"{name}-{tag}"
    directory.mkdir(parents=True)
    (directory / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n"
    )
    (directory / "main.py").write_text(code)
    return directory


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    env = {"DONJON_MONITOR_LEARNING_S": str(LEARNING_S), "DONJON_MONITOR_TICK_S": "0.2"}
    node = start_node(tmp_path_factory.mktemp("baselines-node"), env)
    yield node
    node.stop()


def _wait_alert(node: LiveNode, kind: str, subject: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with node.client() as c:
            alerts: list[dict[str, Any]] = c.get("/v1/alerts", params={"kind": kind}).json()
        for alert in alerts:
            if alert["subject"] == subject:
                return alert
        time.sleep(0.2)
    raise AssertionError(f"no {kind} alert on {subject} within 60 s")


def _records(node: LiveNode) -> dict[int, dict[str, Any]]:
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 1000}).json()
    return {r["seq"]: r for r in records}


def test_a_deploy_that_breaks_a_function_raises_error_rate(live: LiveNode, tmp_path: Path) -> None:
    """100 good calls of v1, then v2 fails every call: an alert on v2 within its first
    block, judged against v1's error rate, resting on v2's failed calls."""
    live.deploy(_function(tmp_path, "flaky", _OK))
    for _ in range(100):
        assert live.invoke("flaky", {}).status_code == 200
    live.deploy(_function(tmp_path, "flaky", _BROKEN, "v2"))
    for _ in range(8):
        assert live.invoke("flaky", {}).status_code != 200
    alert = _wait_alert(live, "baseline.error_rate", "function:flaky@2")
    assert alert["detail"]["reference"] is True
    records = _records(live)
    evidence = [records[seq] for seq in alert["evidence"]]
    assert len(evidence) == 5
    assert all(r["target"] == "flaky@2" and r["outcome"] != "ok" for r in evidence)


def test_a_key_calling_a_function_it_never_called_raises_first_seen(
    live: LiveNode, tmp_path: Path
) -> None:
    """A new key calls `alpha` while it learns; after its window, `beta` is an alert."""
    live.deploy(_function(tmp_path, "alpha", _OK))
    live.deploy(_function(tmp_path, "beta", _OK))
    created = live.create_key("first-seen", "invoker")
    started = time.monotonic()
    assert live.invoke("alpha", {}, key=created["key"]).status_code == 200
    while time.monotonic() - started <= LEARNING_S + 0.5:  # the window passes
        time.sleep(0.2)
    r = live.invoke("beta", {}, key=created["key"])
    assert r.status_code == 200
    alert = _wait_alert(live, "first_seen.function", f"principal:key:{created['id']}")
    (seq,) = alert["evidence"]
    record = _records(live)[seq]
    assert (
        record["target"] == "beta@1" and record["detail"]["request_id"] == r.headers["x-request-id"]
    )
    assert alert["severity"] == "high"
