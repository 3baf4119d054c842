"""A grant by name outlives the function it named: a destination or a `permissions.invoke`
callee removed, and its name deployed again by another developer, received the first
function's events (a destination's record carries its caller's event whole). A grant
names the function as its grantor's deploy checked it: the new one gets nothing until
the grantor is deployed again (and its deployer's rights are checked again)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from async_support import audit_tail, bundle, invoke_async, wait_for
from donjon.bundle import build_bundle
from harness import LiveNode

FAILS = "def handler(event, context):\n    raise ValueError('no')\n"
KEEPS = "def handler(event, context):\n    return {'kept': event}\n"
CALLS = (
    "def handler(event, context):\n"
    "    try:\n"
    "        return {'result': context.invoke(event['to'], {'card': '4111'})}\n"
    "    except context.InvokeError as e:\n"
    "        return {'kind': e.kind, 'reason': e.reason}\n"
)


def _deploy(node: LiveNode, key: str, directory: Path) -> None:
    _, archive = build_bundle(directory)
    with node.client(key) as c:
        r = c.post("/v1/functions", content=archive)
        assert r.status_code in (200, 201), r.text


def _remove(node: LiveNode, key: str, name: str) -> None:
    with node.client(key) as c:
        r = c.delete(f"/v1/functions/{name}")
        assert r.status_code in (200, 204), r.text


def _records(node: LiveNode, action: str, target: str) -> list[dict[str, Any]]:
    return [r for r in audit_tail(node) if r["action"] == action and r["target"] == target]


def _until(check: Any, what: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {what} in 60 s")


def test_a_destination_deployed_again_by_another_developer_gets_no_record(
    node: LiveNode, tmp_path: Path
) -> None:
    first = node.create_key("atk-lapse-first", "developer")["key"]
    other = node.create_key("atk-lapse-other", "developer")["key"]
    sink, source = "atk-lapse-sink", "atk-lapse-src"
    _deploy(node, first, bundle(tmp_path / "a", sink, KEEPS))
    extra = f"retry: {{attempts: 1}}\ndestinations: {{on_failure: {sink}}}\n"
    _deploy(node, first, bundle(tmp_path / "a", source, FAILS, extra))
    # The grant works while it names the function granted: its record is delivered.
    r = invoke_async(node, source, {"card": "4111"})
    assert r.status_code == 202, r.text
    wait_for(node, r.json()["invocation_id"])
    _until(lambda: _records(node, "invocation.attempt", sink), "record delivered to the sink")
    delivered = len(_records(node, "invocation.attempt", sink))

    _remove(node, first, sink)
    _deploy(node, other, bundle(tmp_path / "b", sink, KEEPS))
    r = invoke_async(node, source, {"card": "4111"})
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocation_id"]
    assert wait_for(node, invocation_id)["status"] == "dead"
    refused = _until(
        lambda: [
            x
            for x in _records(node, "invocation.destination", source)
            if x["detail"]["invocation_id"] == invocation_id
        ],
        "refused destination record",
    )
    assert refused[0]["outcome"] == "refused"
    assert "deployed again" in refused[0]["detail"]["reason"]
    assert len(_records(node, "invocation.attempt", sink)) == delivered

    # Deployed again by its owner (whose rights are checked again), it names the new one.
    _deploy(node, first, bundle(tmp_path / "c", source, FAILS + "\n", extra))
    r = invoke_async(node, source, {"card": "4111"})
    assert r.status_code == 202, r.text
    wait_for(node, r.json()["invocation_id"])
    _until(
        lambda: len(_records(node, "invocation.attempt", sink)) > delivered,
        "record delivered after the source's redeploy",
    )


def test_an_invoke_grant_does_not_reach_a_callee_deployed_again_by_another_developer(
    node: LiveNode, tmp_path: Path
) -> None:
    first = node.create_key("atk-lapse-caller-dev", "developer")["key"]
    other = node.create_key("atk-lapse-callee-dev", "developer")["key"]
    callee, caller = "atk-lapse-callee", "atk-lapse-caller"
    _deploy(node, first, bundle(tmp_path / "a", callee, KEEPS))
    extra = f"permissions: {{invoke: [{callee}]}}\n"
    _deploy(node, first, bundle(tmp_path / "a", caller, CALLS, extra))
    r = node.invoke(caller, {"to": callee})
    assert r.status_code == 200, r.text
    assert r.json() == {"result": {"kept": {"card": "4111"}}}

    _remove(node, first, callee)
    _deploy(node, other, bundle(tmp_path / "b", callee, KEEPS))
    r = node.invoke(caller, {"to": callee})
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "denied", r.text
    assert "deployed again" in r.json()["reason"]
    denied = _records(node, "authz.denied", callee)
    assert any(d["actor"] == f"function:{caller}" for d in denied), denied
