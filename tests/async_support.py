"""Helpers of the async invocation tests: bundles written in a test, polling a status."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from harness import LiveNode

#: The terminal states of an async invocation.
ENDED = ("succeeded", "dead")


def bundle(root: Path, name: str, code: str, extra: str = "") -> Path:
    """A function directory: `name`, handler `main.handler` with `code`, manifest `extra`."""
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "donjon.yaml").write_text(f"name: {name}\nhandler: main.handler\n{extra}")
    (directory / "main.py").write_text(code)
    return directory


def invoke_async(node: LiveNode, name: str, event: Any, key: str | None = None) -> Any:
    """POST with `Prefer: respond-async`; the response."""
    with node.client(key) as c:
        return c.post(
            f"/v1/functions/{name}/invoke",
            content=json.dumps(event),
            headers={"prefer": "respond-async"},
        )


def wait_for(
    node: LiveNode, invocation_id: str, states: tuple[str, ...] = ENDED, key: str | None = None
) -> dict[str, Any]:
    """GET /v1/invocations/ID until its status is one of `states` (at most 90 s)."""
    deadline = time.monotonic() + 90
    seen: dict[str, Any] = {}
    with node.client(key) as c:
        while time.monotonic() < deadline:
            r = c.get(f"/v1/invocations/{invocation_id}")
            assert r.status_code == 200, r.text
            seen = r.json()
            if seen["status"] in states:
                return seen
            time.sleep(0.1)
    raise AssertionError(f"{invocation_id} never reached {states}: {seen}")


def audit_tail(node: LiveNode, n: int = 3000) -> list[dict[str, Any]]:
    with node.client() as c:
        records: list[dict[str, Any]] = c.get("/v1/audit", params={"n": n}).json()
    return records


def of_invocation(records: list[dict[str, Any]], invocation_id: str) -> list[dict[str, Any]]:
    """The queue's records about one invocation, oldest first."""
    return [r for r in records if r.get("detail", {}).get("invocation_id") == invocation_id]


def fail_once_then_remove(node: LiveNode, name: str, event: Any, key: str) -> str:
    """Queue `event` for `key`'s function `name` (which fails its first attempt), wait for
    that attempt, then remove the function as `key`; the invocation id."""
    queued = invoke_async(node, name, event, key=key)
    assert queued.status_code == 202, queued.text
    invocation_id: str = queued.json()["invocation_id"]
    wait_for(node, invocation_id, ("failed",))  # its first attempt ran the owner's code
    with node.client(key) as c:
        assert c.delete(f"/v1/functions/{name}").status_code == 204
    return invocation_id


def assert_dead_reach(node: LiveNode, key: str, source: str, mine: str, other: str) -> None:
    """`key` (from `source`) reaches the dead invocation `mine` (event {"n": 1}) and not
    `other` (event {"card": "OTHER-TENANT-DATA"}, of another function): `other` is left out
    of the list, 403 to show, redrive or purge (its function's, or the whole queue), and
    404 as an invocation, its event never shown; the admin still reads it."""
    with node.client() as c:
        other_fn = c.get(f"/v1/dlq/{other}").json()["function"]
    with node.client(key, source) as c:
        listed = [d["invocation_id"] for d in c.get("/v1/dlq").json()]
        answers = [
            c.get(f"/v1/dlq/{other}"),
            c.post(f"/v1/dlq/{other}/redrive"),
            c.post("/v1/dlq/redrive", json={"function": other_fn}),
            c.delete("/v1/dlq", params={"function": other_fn}),
            c.delete("/v1/dlq"),
        ]
        as_invocation = c.get(f"/v1/invocations/{other}")
        shown = c.get(f"/v1/dlq/{mine}")
    assert mine in listed and other not in listed
    assert [a.status_code for a in answers] == [403] * 5
    assert all("OTHER-TENANT-DATA" not in a.text for a in [*answers, as_invocation])
    assert as_invocation.status_code == 404
    assert shown.status_code == 200 and shown.json()["event"] == {"n": 1}
    with node.client() as c:
        assert c.get(f"/v1/dlq/{other}").json()["event"] == {"card": "OTHER-TENANT-DATA"}
