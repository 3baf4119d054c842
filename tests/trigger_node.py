"""A node for test_attack_trigger_input_sweep.py: echoing functions deployed with their
triggers, and what the node says afterwards (a run's event, how many runs a function
had, the listings a refused request must leave alone, the audit's denials by source)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from harness import LiveNode
from trigger_sweep import ECHO_HANDLER

__all__ = ["denials", "deploy_echo", "listings", "log_since", "outcome", "runs", "set_secret"]


def deploy_echo(node: LiveNode, root: Path, name: str, triggers: str) -> None:
    fn = root / name
    fn.mkdir(parents=True, exist_ok=True)
    (fn / "main.py").write_text(ECHO_HANDLER)
    (fn / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
        f"limits: {{rate: 6000/minute, body: 64KiB}}\ntriggers:\n{triggers}"
    )
    node.deploy(fn)


def set_secret(node: LiveNode, name: str, value: str) -> None:
    with node.client() as c:
        assert c.post(f"/v1/secrets/{name}", json={"value": value}).status_code == 201


def log_since(node: LiveNode, start: int) -> str:
    with (node.data_dir / "serve.log").open("rb") as f:
        f.seek(start)
        return f.read().decode("utf-8", "replace")


def outcome(node: LiveNode, invocation: str) -> dict[str, Any]:
    """The event an accepted delivery's run got (the echo function's result)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with node.client() as c:
            seen = c.get(f"/v1/invocations/{invocation}").json()
        if seen["status"] in ("succeeded", "dead"):
            assert seen["status"] == "succeeded", seen
            result: dict[str, Any] = json.loads(seen["result"]["body"])["event"]
            return result
        time.sleep(0.2)
    raise AssertionError(f"invocation {invocation} never ended")


def runs(node: LiveNode, name: str) -> int:
    with node.client() as c:
        return len(c.get(f"/v1/functions/{name}/logs", params={"n": 500}).json())


def listings(node: LiveNode) -> dict[str, Any]:
    with node.client() as c:
        return {path: c.get(path).json() for path in ("/v1/functions", "/v1/dlq", "/v1/secrets")}


def denials(node: LiveNode) -> dict[str, list[dict[str, Any]]]:
    """The audit's auth.denied and webhook.unknown records, by client address."""
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 5000}).json()
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r["action"] in ("auth.denied", "webhook.unknown"):
            out.setdefault(r["detail"].get("client", ""), []).append(r)
    return out
