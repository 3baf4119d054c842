"""Async invocation on a real node: 202 + Location, the run to succeeded with CloudEvents
attributes in context, retries to the dead-letter queue, redrive after a fix, who may see
an invocation, and the checks made before anything is queued."""

from __future__ import annotations

import json
import time
from pathlib import Path

from async_support import audit_tail, bundle, invoke_async, of_invocation, wait_for
from harness import LiveNode
from utc_day import clear_of_utc_midnight

ECHO = (
    "def handler(event, context):\n"
    "    return {'got': event, 'event_id': context.event_id, 'ce': context.cloudevent,\n"
    "            'aws': context.aws_request_id}\n"
)


def test_async_invoke_is_accepted_then_runs_to_succeeded(node: LiveNode, tmp_path: Path) -> None:
    """202 with Location and Preference-Applied; the call runs with CloudEvents attributes."""
    node.deploy(bundle(tmp_path, "async-echo", ECHO))
    r = invoke_async(node, "async-echo", {"order": 42})
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocation_id"]
    assert r.json()["status"] == "queued"
    assert r.headers["location"] == f"/v1/invocations/{invocation_id}"
    assert r.headers["preference-applied"] == "respond-async"
    done = wait_for(node, invocation_id)
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1
    assert done["error"] is None
    result = done["result"]
    assert result["got"] == {"order": 42}
    assert result["event_id"] == invocation_id
    assert result["aws"] == done["request_id"]  # Lambda's fields are still there
    ce = result["ce"]
    assert ce["specversion"] == "1.0"
    assert ce["id"] == invocation_id
    assert ce["source"] == "/v1/functions/async-echo/invoke"
    assert ce["type"] == "dev.donjon.invoke"
    assert ce["datacontenttype"] == "application/json"
    assert ce["time"].endswith("Z")
    records = audit_tail(node)
    mine = of_invocation(records, invocation_id)
    assert [r["action"] for r in mine] == ["invocation.enqueue", "invocation.attempt"]
    assert mine[0]["actor"].startswith("key:")
    # The 202's request id names the enqueue record, with the caller's address.
    assert mine[0]["detail"]["request_id"] == r.json()["request_id"]
    assert mine[0]["detail"]["client"] == "127.0.0.1"
    assert "order" not in json.dumps(mine)  # no record carries the event's body
    calls = [
        r
        for r in records
        if r["action"] == "function.invoke" and r["detail"].get("request_id") == done["request_id"]
    ]
    assert len(calls) == 1
    assert calls[0]["outcome"] == "ok"
    assert calls[0]["detail"]["trigger"] == "invoke"


def test_sync_call_has_no_cloudevent(node: LiveNode, tmp_path: Path) -> None:
    """Without the preference the call is sync, as before, and its context has no event id."""
    node.deploy(bundle(tmp_path, "async-echo2", ECHO))
    r = node.invoke("async-echo2", {"a": 1})
    assert r.status_code == 200, r.text
    assert r.json()["event_id"] is None
    assert r.json()["ce"] is None


def test_failing_event_is_dead_lettered_then_redriven_after_a_fix(
    node: LiveNode, tmp_path: Path
) -> None:
    """A function that raises uses up its attempts, lands in the DLQ, and a redrive of it
    after a fixed version is deployed succeeds."""
    retry = "retry: {attempts: 2, backoff_s: 0.1, max_age_s: 600}\n"
    broken = "def handler(event, context):\n    raise RuntimeError('broken v1')\n"
    node.deploy(bundle(tmp_path / "v1", "async-flaky", broken, retry))
    r = invoke_async(node, "async-flaky", {"n": 7})
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocation_id"]
    dead = wait_for(node, invocation_id)
    assert dead["status"] == "dead"
    assert dead["attempts"] == 2
    assert dead["error"]["type"] == "RuntimeError"
    assert "broken v1" in dead["error"]["message"]  # the admin may read its logs
    with node.client() as c:
        listed = c.get("/v1/dlq", params={"function": "async-flaky"}).json()
        assert invocation_id in [d["invocation_id"] for d in listed]
        shown = c.get(f"/v1/dlq/{invocation_id}").json()
        assert shown["event"] == {"n": 7}
    mine = of_invocation(audit_tail(node), invocation_id)
    attempts = [r for r in mine if r["action"] == "invocation.attempt"]
    assert [a["detail"]["state"] for a in attempts] == ["failed", "dead"]
    assert "invocation.dead" in [r["action"] for r in mine]

    fixed = "def handler(event, context):\n    return {'fixed': event['n']}\n"
    node.deploy(bundle(tmp_path / "v2", "async-flaky", fixed, retry))
    with node.client() as c:
        r = c.post(f"/v1/dlq/{invocation_id}/redrive")
    assert r.status_code == 200, r.text
    assert r.json()["attempts"] == 0
    done = wait_for(node, invocation_id)
    assert done["status"] == "succeeded"
    assert done["result"] == {"fixed": 7}
    assert "invocation.redrive" in [
        r["action"] for r in of_invocation(audit_tail(node), invocation_id)
    ]
    with node.client() as c:
        assert c.get(f"/v1/dlq/{invocation_id}").status_code == 404  # no longer dead
        assert c.post(f"/v1/dlq/{invocation_id}/redrive").status_code == 404
        assert c.post("/v1/dlq/no-such-id/redrive").status_code == 404
        assert c.post("/v1/dlq/redrive", json={"function": "Not A Name"}).status_code == 400
        assert c.get("/v1/dlq", params={"function": "../x"}).status_code == 400


def test_on_failure_destination_gets_the_outcome(node: LiveNode, tmp_path: Path) -> None:
    """A dead-lettered event is handed to on_failure with Lambda's destination record."""
    sink = "import json\ndef handler(event, context):\n    print('RECORD ' + json.dumps(event))\n"
    node.deploy(bundle(tmp_path, "async-sink", sink))
    failing = "def handler(event, context):\n    raise ValueError('nope')\n"
    extra = "retry: {attempts: 1, backoff_s: 0.1}\ndestinations: {on_failure: async-sink}\n"
    node.deploy(bundle(tmp_path, "async-fails", failing, extra))
    invocation_id = invoke_async(node, "async-fails", {"k": "v"}).json()["invocation_id"]
    assert wait_for(node, invocation_id)["status"] == "dead"
    record = None
    for _ in range(300):
        with node.client() as c:
            entries = c.get("/v1/functions/async-sink/logs").json()
        found = [e for e in entries if invocation_id in e["output"]]
        if found:
            record = json.loads(found[0]["output"].split("RECORD ", 1)[1].splitlines()[0])
            break
        time.sleep(0.1)
    assert record is not None, "the destination never ran"
    assert record["requestContext"]["requestId"] == invocation_id
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestPayload"] == {"k": "v"}
    assert record["responsePayload"]["errorType"] == "ValueError"


def test_only_its_caller_and_admins_see_an_invocation(node: LiveNode, tmp_path: Path) -> None:
    """Another caller gets 404 for an invocation it did not make; the DLQ is admins' only."""
    node.deploy(bundle(tmp_path, "async-mine", ECHO))
    dev = node.create_key("async-dev", "developer")["key"]
    other = node.create_key("async-other", "developer")["key"]
    r = invoke_async(node, "async-mine", {"x": 1}, key=dev)
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocation_id"]
    assert wait_for(node, invocation_id, key=dev)["status"] == "succeeded"
    assert wait_for(node, invocation_id)["status"] == "succeeded"  # the admin
    with node.client(other) as c:
        assert c.get(f"/v1/invocations/{invocation_id}").status_code == 404
        assert c.get("/v1/invocations/not-an-id").status_code == 404
        assert c.get("/v1/dlq").status_code == 403
    with node.client("") as c:
        assert c.get(f"/v1/invocations/{invocation_id}").status_code == 401


def test_bad_async_calls_are_refused_before_anything_is_queued(
    node: LiveNode, tmp_path: Path
) -> None:
    """Schema, size and unknown function are checked as for a sync call: nothing queued."""
    schema = "input_schema: {type: object, required: [url]}\nlimits: {body: 1KiB}\n"
    node.deploy(bundle(tmp_path, "async-strict", ECHO, schema))
    assert invoke_async(node, "async-strict", {"no": "url"}).status_code == 422
    assert invoke_async(node, "async-strict", {"url": "x" * 4096}).status_code == 413
    assert invoke_async(node, "async-ghost", {}).status_code == 404
    with node.client() as c:
        r = c.post(
            "/v1/functions/async-strict/invoke",
            content=b"{not json",
            headers={"prefer": "respond-async"},
        )
    assert r.status_code == 400
    queued = [
        r
        for r in audit_tail(node)
        if r["action"] == "invocation.enqueue" and r["target"] in ("async-strict", "async-ghost")
    ]
    assert queued == []


def test_an_async_call_is_counted_once_and_each_retry_again(node: LiveNode, tmp_path: Path) -> None:
    """The request's admission stands for the first attempt (quota +1, not +2); a retry is a
    call of its own (+1)."""
    clear_of_utc_midnight()
    flaky = (
        "def handler(event, context):\n"
        "    if event.get('fail_first') and context.cloudevent['donjonattempt'] == '1':\n"
        "        raise RuntimeError('first attempt fails')\n"
        "    return 'ok'\n"
    )
    node.deploy(bundle(tmp_path, "async-counted", flaky, "retry: {attempts: 2, backoff_s: 0.1}\n"))
    made = node.create_key("async-counted-key", "developer")
    subject = f"key:{made['id']}"
    with node.client() as c:
        r = c.put(f"/v1/quotas/{subject}", json={"invocations": 100})
        assert r.status_code == 201, r.text

    def used() -> int:
        with node.client() as c:
            quotas = c.get("/v1/quotas").json()
        return int(next(q for q in quotas if q["subject"] == subject)["invocations"]["used"])

    once = invoke_async(node, "async-counted", {}, key=made["key"]).json()["invocation_id"]
    assert wait_for(node, once)["status"] == "succeeded"
    assert used() == 1
    twice = invoke_async(node, "async-counted", {"fail_first": True}, key=made["key"])
    done = wait_for(node, twice.json()["invocation_id"])
    assert done["status"] == "succeeded"
    assert done["attempts"] == 2
    assert used() == 3
