"""Attacks on async invocations, the dead-letter queue and destinations, third round: two
developers (tenants) sharing a node, a function's name reused by the second after the
first removed it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from async_support import audit_tail, bundle, fail_once_then_remove, invoke_async, wait_for
from donjon.triggers.queue.destinations import MAX_DESTINATION_CHAIN
from harness import LiveNode, run_cli

FAILS_FIRST = (
    "def handler(event, context):\n"
    "    if context.cloudevent['donjonattempt'] == '1':\n"
    "        raise RuntimeError('first attempt fails')\n"
    "    return {'ran': True}\n"
)
PRINTS = "def handler(event, context):\n    print('sink got', event)\n    return 0\n"


def test_the_names_new_owner_gets_no_failure_record_of_the_removed_functions_event(
    node: LiveNode, tmp_path: Path
) -> None:
    """A's function fails its first attempt at an async event (retried 10 s later); A removes
    it and B deploys the name with an `on_failure` of B's own. The event is dead-lettered
    unrun (404), but its failure record, whose requestPayload is A's caller's event, went to
    B's destination: the policy of the function deployed now, not the one it was queued for."""
    name, sink = "reused-dest", "reused-dest-sink"
    a = node.create_key("dest-reuse-a", "developer")["key"]
    b = node.create_key("dest-reuse-b", "developer")["key"]
    retry = "retry: {attempts: 3, backoff_s: 10}\n"
    run_cli(node.env(a), "deploy", str(bundle(tmp_path / "a", name, FAILS_FIRST, retry)))
    invocation_id = fail_once_then_remove(node, name, {"card": "4111-of-a-caller"}, a)
    run_cli(node.env(b), "deploy", str(bundle(tmp_path / "b", sink, PRINTS)))
    to_sink = f"destinations: {{on_failure: {sink}}}\n"
    run_cli(node.env(b), "deploy", str(bundle(tmp_path / "b", name, PRINTS, to_sink)))
    dead = wait_for(node, invocation_id)
    assert dead["status"] == "dead" and "was removed" in dead["error"]["message"], dead
    with node.client(b) as c:
        assert "4111-of-a-caller" not in c.get(f"/v1/functions/{sink}/logs").text
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 3000}).json()
    refused = [
        x
        for x in records
        if x["action"] == "invocation.destination"
        and x["detail"].get("invocation_id") == invocation_id
    ]
    assert refused and refused[-1]["outcome"] == "refused", refused
    enqueued = [x for x in records if x["action"] == "invocation.enqueue" and x["target"] == sink]
    assert enqueued == [], enqueued


def test_a_ring_of_destinations_does_not_grow_its_records_past_the_body_limit(
    node: LiveNode, tmp_path: Path
) -> None:
    """Two functions naming each other `on_success`, each returning 700 KB: each record's
    requestPayload is the record before it, so the k-th held k results (the 16th, ~11 MB
    past any body limit, ~95 MB queued from one call). A record larger than its
    destination's body limit is queued with its payloads null."""
    big = "def handler(event, context):\n    return 'x' * 700_000\n"
    a, b = "atk-grow-ring-a", "atk-grow-ring-b"
    node.deploy(bundle(tmp_path / "1", a, big))
    node.deploy(bundle(tmp_path / "2", b, big, f"destinations: {{on_success: {a}}}\n"))
    node.deploy(bundle(tmp_path / "3", a, big, f"destinations: {{on_success: {b}}}\n"))
    r = invoke_async(node, a, {"start": 1})
    assert r.status_code == 202, r.text
    limit = 1024 * 1024  # limits.body's default, both functions'
    deadline = time.monotonic() + 90
    records: list[dict[str, Any]] = []
    ended = False
    while time.monotonic() < deadline and not ended:
        time.sleep(0.5)
        records = [x for x in audit_tail(node, 5000) if str(x["target"]) in (a, b)]
        ended = any(
            x["action"] == "invocation.destination" or x["detail"].get("bytes", 0) > limit
            for x in records
        )
    enqueued = [x["detail"]["bytes"] for x in records if x["action"] == "invocation.enqueue"]
    assert ended, enqueued
    assert max(enqueued) <= limit, enqueued
    assert len(enqueued) == MAX_DESTINATION_CHAIN + 1, enqueued


def test_a_redrive_refused_for_a_full_queue_is_audited(node: LiveNode, tmp_path: Path) -> None:
    """A dead letter redriven while its function's queue holds its `limits.queued`: 503, it
    stays dead, and the refusal is in the audit log (before, only a redrive that went
    through was: the admin's refused attempt left no record)."""
    name = "atk-redrive-full"
    code = (
        "import time\n"
        "def handler(event, context):\n"
        "    if event.get('sleep'):\n"
        "        time.sleep(event['sleep'])\n"
        "        return 0\n"
        "    raise ValueError('no')\n"
    )
    node.deploy(bundle(tmp_path, name, code, "retry: {attempts: 1}\nlimits: {queued: 1}\n"))
    dead = invoke_async(node, name, {})
    assert dead.status_code == 202, dead.text
    dead_id = dead.json()["invocation_id"]
    assert wait_for(node, dead_id)["status"] == "dead"
    held = invoke_async(node, name, {"sleep": 6})
    assert held.status_code == 202, held.text
    wait_for(node, held.json()["invocation_id"], ("running",))
    with node.client() as c:
        refused = c.post(f"/v1/dlq/{dead_id}/redrive")
        assert refused.status_code == 503, refused.text
        assert c.get(f"/v1/dlq/{dead_id}").status_code == 200  # still dead
    records = [
        x
        for x in audit_tail(node, 2000)
        if x["action"] == "invocation.redrive" and x["detail"].get("invocation_id") == dead_id
    ]
    assert [x["outcome"] for x in records] == ["refused"], records
    assert records[0]["detail"]["reason"] == "queue full", records


def test_a_revoked_keys_queued_event_reaches_no_destination(node: LiveNode, tmp_path: Path) -> None:
    """An invoker key queues an event (its first attempt fails) and is revoked: the event is
    dead (401) unrun, but its failure record, the revoked caller's event as requestPayload,
    went on to the function's `on_failure`, whose code ran it after the revocation. A
    caller no longer allowed (401, 403) sends no record; the refusal is audited."""
    name, sink = "atk-revoked-dest", "atk-revoked-dest-sink"
    node.deploy(bundle(tmp_path / "s", sink, PRINTS))
    extra = f"retry: {{attempts: 3, backoff_s: 6}}\ndestinations: {{on_failure: {sink}}}\n"
    node.deploy(bundle(tmp_path / "f", name, FAILS_FIRST, extra))
    made = node.create_key("atk-revoked-dest-caller", "invoker")
    queued = invoke_async(node, name, {"order": "of-a-revoked-key"}, key=made["key"])
    assert queued.status_code == 202, queued.text
    invocation_id = queued.json()["invocation_id"]
    wait_for(node, invocation_id, ("failed",))
    with node.client() as c:
        assert c.delete(f"/v1/keys/{made['id']}").status_code in (200, 204)
    dead = wait_for(node, invocation_id)
    assert dead["status"] == "dead" and dead["error"]["type"] == "Unauthorized", dead
    with node.client() as c:
        assert "of-a-revoked-key" not in c.get(f"/v1/functions/{sink}/logs").text
    refused = [
        x
        for x in audit_tail(node, 2000)
        if x["action"] == "invocation.destination"
        and x["detail"].get("invocation_id") == invocation_id
    ]
    assert [x["outcome"] for x in refused] == ["refused"], refused


def test_a_key_limited_to_one_function_reaches_no_other_functions_dead_letters(
    node: LiveNode, tmp_path: Path
) -> None:
    """A key of a role allowed `dlq:manage` on `*`, limited to one function (`functions`):
    before, the limit held for `function:*` actions only, and the key listed, showed and
    redrove every function's dead letters (their callers' events) and purged them all. Now
    it reaches its function's only, as if its role named that one."""
    fails = "def handler(event, context):\n    raise ValueError('no')\n"
    ids: dict[str, str] = {}
    for name in ("atk-dlq-limit-own", "atk-dlq-limit-other"):
        node.deploy(bundle(tmp_path, name, fails, "retry: {attempts: 1}\n"))
        queued = invoke_async(node, name, {"secret": f"event-of-{name}"})
        assert queued.status_code == 202, queued.text
        ids[name] = queued.json()["invocation_id"]
        assert wait_for(node, ids[name])["status"] == "dead"
    role = "atk-dlq-limit-role"
    allow = {"effect": "allow", "actions": ["dlq:manage"], "resources": ["*"]}
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": role, "statements": [allow]})
        assert r.status_code in (200, 201), r.text
    key = node.create_key("atk-dlq-limited", role, ["atk-dlq-limit-own"])["key"]
    other = ids["atk-dlq-limit-other"]
    with node.client(key) as c:
        listed = {d["invocation_id"] for d in c.get("/v1/dlq").json()}
        assert ids["atk-dlq-limit-own"] in listed and other not in listed, listed
        assert c.get(f"/v1/dlq/{other}").status_code == 403
        assert c.post(f"/v1/dlq/{other}/redrive").status_code == 403
        assert c.get(f"/v1/invocations/{other}").status_code == 404
        assert c.delete("/v1/dlq").status_code == 403
        assert c.get(f"/v1/dlq/{ids['atk-dlq-limit-own']}").status_code == 200
    with node.client() as c:
        assert c.get(f"/v1/dlq/{other}").status_code == 200  # still dead, untouched
