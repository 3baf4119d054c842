"""Attacks on async invocation and the dead-letter queue (issue 16): reading another
caller's result, running events under a key revoked since they were queued, reaching the
DLQ without `dlq:manage`, and smuggling a bad event past the checks by going async."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx

from async_support import audit_tail, bundle, invoke_async, of_invocation, wait_for
from donjon.bundle import build_bundle
from harness import LiveNode
from jwt_support import SigningKey, claims, jwks
from sec_support import audit_records

SECRET_RESULT = "def handler(event, context):\n    return {'private': event['v']}\n"


def test_read_another_callers_async_result(node: LiveNode, tmp_path: Path) -> None:
    """A second key cannot read (or learn the existence of) another key's invocation."""
    node.deploy(bundle(tmp_path, "atk-private", SECRET_RESULT))
    owner = node.create_key("atk-owner", "developer")["key"]
    thief_key = node.create_key("atk-thief", "invoker")["key"]
    r = invoke_async(node, "atk-private", {"v": "s3cr3t-result"}, key=owner)
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocation_id"]
    assert wait_for(node, invocation_id, key=owner)["result"] == {"private": "s3cr3t-result"}
    with node.client(thief_key) as c:
        stolen = c.get(f"/v1/invocations/{invocation_id}")
        missing = c.get("/v1/invocations/00000000-0000-4000-8000-000000000000")
    assert stolen.status_code == 404
    assert "s3cr3t-result" not in stolen.text
    assert stolen.json()["title"] == missing.json()["title"]  # the same as one that never was


def test_queued_events_of_a_revoked_key_do_not_run(node: LiveNode, tmp_path: Path) -> None:
    """Revoking a key stops its queued invocations: the next attempt is refused (401), dead."""
    fails_first = (
        "def handler(event, context):\n"
        "    if context.cloudevent['donjonattempt'] == '1':\n"
        "        raise RuntimeError('first attempt fails')\n"
        "    return {'ran': 'after revocation'}\n"
    )
    retry = "retry: {attempts: 3, backoff_s: 6, max_age_s: 600}\n"
    node.deploy(bundle(tmp_path, "atk-revoked", fails_first, retry))
    made = node.create_key("atk-soon-revoked", "developer")
    r = invoke_async(node, "atk-revoked", {}, key=made["key"])
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocation_id"]
    assert wait_for(node, invocation_id, ("failed",))["attempts"] == 1
    with node.client() as c:
        assert c.delete(f"/v1/keys/{made['id']}").status_code in (200, 204)
    dead = wait_for(node, invocation_id)
    assert dead["status"] == "dead"
    assert dead["error"]["type"] == "Unauthorized"
    assert dead["result"] is None


def test_a_revoked_keys_event_is_refused_as_unauthorized_before_its_schema_is_read(
    node: LiveNode, tmp_path: Path
) -> None:
    """A queued event of a key revoked since, which a later deploy's input_schema also
    refuses, is dead as Unauthorized: the caller is checked before its event is read."""
    fails_first = (
        "def handler(event, context):\n"
        "    if context.cloudevent['donjonattempt'] == '1':\n"
        "        raise RuntimeError('first attempt fails')\n"
        "    return {'ran': 'after revocation'}\n"
    )
    retry = "retry: {attempts: 3, backoff_s: 6, max_age_s: 600}\n"
    node.deploy(bundle(tmp_path / "v1", "atk-revoked-schema", fails_first, retry))
    made = node.create_key("atk-revoked-schema", "developer")
    r = invoke_async(node, "atk-revoked-schema", {"n": "text"}, key=made["key"])
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocation_id"]
    assert wait_for(node, invocation_id, ("failed",))["attempts"] == 1
    schema = "input_schema: {type: object, properties: {n: {type: integer}}}\n"
    node.deploy(bundle(tmp_path / "v2", "atk-revoked-schema", fails_first, retry + schema))
    with node.client() as c:
        assert c.delete(f"/v1/keys/{made['id']}").status_code in (200, 204)
    dead = wait_for(node, invocation_id)
    assert dead["status"] == "dead"
    assert dead["error"]["type"] == "Unauthorized"


def test_reach_the_dead_letter_queue_without_dlq_manage(node: LiveNode, tmp_path: Path) -> None:
    """A developer can neither list, show, redrive nor purge dead-lettered events."""
    node.deploy(
        bundle(
            tmp_path,
            "atk-dead",
            "def handler(e, c):\n    raise ValueError('x')\n",
            "retry: {attempts: 1, backoff_s: 0.1}\n",
        )
    )
    # The marker has letters no hex id can hold: a 403 names the request id and the path
    # (a UUID), and "4111" alone turned up in one of them once in CI.
    card = "card-4111-PLAINTEXT"
    invocation_id = invoke_async(node, "atk-dead", {"card": card}).json()["invocation_id"]
    assert wait_for(node, invocation_id)["status"] == "dead"
    dev = node.create_key("atk-dlq-dev", "developer")["key"]
    with node.client(dev) as c:
        answers = [
            c.get("/v1/dlq"),
            c.get(f"/v1/dlq/{invocation_id}"),
            c.post(f"/v1/dlq/{invocation_id}/redrive"),
            c.post("/v1/dlq/redrive", json={"function": "atk-dead"}),
            c.delete("/v1/dlq"),
        ]
    assert [a.status_code for a in answers] == [403] * 5
    assert all("PLAINTEXT" not in a.text for a in answers)
    with node.client() as c:
        assert c.get(f"/v1/dlq/{invocation_id}").json()["event"] == {"card": card}


def test_bypass_input_checks_by_going_async(node: LiveNode, tmp_path: Path) -> None:
    """An event the function's schema or body limit refuses is refused async too: 4xx, never
    queued, and a caller without function:invoke cannot queue at all."""
    strict = "input_schema: {type: object, required: [id], properties: {id: {type: integer}}}\n"
    node.deploy(bundle(tmp_path, "atk-strict", SECRET_RESULT, strict + "limits: {body: 1KiB}\n"))
    auditor = node.create_key("atk-auditor", "auditor")["key"]
    assert invoke_async(node, "atk-strict", {"id": "1; DROP TABLE"}).status_code == 422
    assert invoke_async(node, "atk-strict", {"id": 1, "pad": "x" * 5000}).status_code == 413
    assert invoke_async(node, "atk-strict", {"id": 1}, key=auditor).status_code == 403
    with node.client() as c:
        queued = [
            r
            for r in c.get("/v1/audit", params={"n": 3000}).json()
            if r["action"] == "invocation.enqueue" and r["target"] == "atk-strict"
        ]
    assert queued == []


def test_queued_events_of_a_key_its_role_no_longer_allows_do_not_run(
    node: LiveNode, tmp_path: Path
) -> None:
    """A role changed to deny the function stops its keys' queued invocations: the next
    attempt is refused (403), dead, as a sync call of that key would be."""
    fails_first = (
        "def handler(event, context):\n"
        "    if context.cloudevent['donjonattempt'] == '1':\n"
        "        raise RuntimeError('first attempt fails')\n"
        "    return {'ran': 'after the role denied it'}\n"
    )
    retry = "retry: {attempts: 3, backoff_s: 6, max_age_s: 600}\n"
    node.deploy(bundle(tmp_path, "atk-denied-later", fails_first, retry))
    role = "atk-denied-later-role"
    allow = {"effect": "allow", "actions": ["function:invoke"], "resources": ["atk-*"]}
    with node.client() as c:
        assert c.post("/v1/roles", json={"name": role, "statements": [allow]}).status_code in (
            200,
            201,
        )
    key = node.create_key("atk-denied-later", role)["key"]
    r = invoke_async(node, "atk-denied-later", {}, key=key)
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocation_id"]
    assert wait_for(node, invocation_id, ("failed",))["attempts"] == 1
    deny = {"effect": "deny", "actions": ["function:invoke"], "resources": ["atk-denied-*"]}
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": role, "statements": [allow, deny]})
        assert r.status_code in (200, 201), r.text
    assert node.invoke("atk-denied-later", {}, key).status_code == 403
    dead = wait_for(node, invocation_id)
    assert dead["status"] == "dead", dead
    assert dead["error"]["type"] == "Forbidden"
    assert dead["result"] is None


def test_queued_events_of_a_removed_issuers_token_do_not_run(
    node: LiveNode, tmp_path: Path
) -> None:
    """Removing an issuer stops the async invocations its tokens queued, as revoking a key
    stops its own: the next attempt is refused (401), dead."""
    fails_first = (
        "def handler(event, context):\n"
        "    if context.cloudevent['donjonattempt'] == '1':\n"
        "        raise RuntimeError('first attempt fails')\n"
        "    return {'ran': 'after the issuer was removed'}\n"
    )
    retry = "retry: {attempts: 3, backoff_s: 6, max_age_s: 600}\n"
    node.deploy(bundle(tmp_path, "atk-issuer-gone", fails_first, retry))
    key = SigningKey.generate("gone-1", "ES256")
    issuer = {
        "name": "atk-gone",
        "issuer": "https://gone.example",
        "audience": "donjon",
        "jwks": jwks(key),
        "allowed_roles": ["invoker"],
    }
    with node.client() as c:
        assert c.post("/v1/issuers", json=issuer).status_code == 201
    token = key.sign(claims("https://gone.example", "donjon", roles=["invoker"]))
    r = invoke_async(node, "atk-issuer-gone", {}, key=token)
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocation_id"]
    assert wait_for(node, invocation_id, ("failed",))["attempts"] == 1
    with node.client() as c:
        assert c.delete("/v1/issuers/atk-gone").status_code == 204
    dead = wait_for(node, invocation_id)
    assert dead["status"] == "dead", dead
    assert dead["error"]["type"] == "Unauthorized"
    assert dead["result"] is None


def test_a_lone_surrogate_in_an_event_does_not_hide_it_from_its_caller_or_the_admin(
    node: LiveNode, tmp_path: Path
) -> None:
    """An event holding a lone surrogate (the JSON escape `\\ud800`, which a sync call
    echoes back as written) stays readable: its caller reads the result, an admin the
    dead event, and its error is the function's (before, both answered 500, and an
    error message holding one failed the call as the node's own UnicodeEncodeError)."""
    code = (
        "def handler(event, context):\n"
        "    if event['fail']:\n"
        "        raise RuntimeError('refused \\udcff')\n"
        "    return dict(event, **{'\\udcff': 1})\n"  # a key of its own: not text either
    )
    node.deploy(bundle(tmp_path, "atk-surrogate", code, "retry: {attempts: 1}\n"))
    caller = node.create_key("atk-surrogate-caller", "invoker")["key"]
    ids = {}
    for fail in (False, True):
        r = invoke_async(node, "atk-surrogate", {"fail": fail, "s": "\ud800"}, key=caller)
        assert r.status_code == 202, r.text
        ids[fail] = r.json()["invocation_id"]
    done = wait_for(node, ids[False], key=caller)
    assert done["status"] == "succeeded"
    assert done["result"] == {"fail": False, "s": "\ud800", "\udcff": 1}
    dead = wait_for(node, ids[True], key=caller)
    assert dead["status"] == "dead" and dead["error"]["type"] == "RuntimeError", dead
    with node.client() as c:
        shown = c.get(f"/v1/dlq/{ids[True]}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["event"] == {"fail": True, "s": "\ud800"}


def test_a_quarantined_functions_backlog_does_not_spin_the_workers(
    node: LiveNode, tmp_path: Path
) -> None:
    """Events queued before a quarantine wait a minute between refused attempts, not a
    second or two: a backlog of limits.queued (10,000) would otherwise keep the node's
    workers busy and write an invocation.attempt record per event every second or two
    until max_age_s (an hour), ~100 records a second; released, they run."""
    slow = "import time\ndef handler(event, context):\n    time.sleep(2)\n    return event\n"
    node.deploy(bundle(tmp_path, "atk-quarantined", slow, "timeout_s: 10\n"))
    ids = [
        invoke_async(node, "atk-quarantined", {"n": n}).json()["invocation_id"] for n in range(8)
    ]
    with node.client() as c:
        r = c.post("/v1/functions/atk-quarantined/quarantine", json={"reason": "looking"})
    assert r.status_code == 201, r.text
    try:
        refused = [wait_for(node, i, ("failed", "succeeded")) for i in ids]
        waiting = [i for i in refused if i["status"] == "failed"]
        assert waiting, "every event ran before the quarantine: no refused attempt to check"
        for invocation in waiting:
            assert invocation["error"]["type"] == "FunctionQuarantined", invocation
            assert invocation["attempts"] == 0  # a refusal gives its attempt back
            assert invocation["next_attempt_at"] - invocation["updated_at"] >= 30, invocation
    finally:
        with node.client() as c:
            assert c.post("/v1/functions/atk-quarantined/release").status_code == 200


def test_a_function_name_with_a_trailing_newline_is_refused_by_the_dlq(node: LiveNode) -> None:
    """`?function=probe%0A` is not a function name: listing or purging with it is a 400
    that writes nothing (before, `$` let the newline through: the purge answered 200 and
    left an `invocation.purge` record naming a function that cannot exist)."""
    with node.client() as c:
        listed = c.get("/v1/dlq", params={"function": "probe\n"})
        purged = c.delete("/v1/dlq", params={"function": "probe\n"})
        records = c.get("/v1/audit", params={"n": 2000}).json()
    assert (listed.status_code, purged.status_code) == (400, 400), (listed.text, purged.text)
    assert not [r for r in records if r["action"] == "invocation.purge" and "\n" in r["target"]]


def test_a_deployer_cannot_send_its_events_to_a_function_it_may_not_invoke(
    node: LiveNode, tmp_path: Path
) -> None:
    """A role that may deploy and invoke team-* only cannot name another function as a
    destination (403, audited, nothing deployed): before, its own function's failure
    records, whose requestPayload is its event, were queued for `probe` and ran it,
    with no principal to refuse them, as its permissions.invoke grant is refused."""
    tag = secrets.token_hex(3)
    role, team = f"sec-dest-{tag}", f"dest{tag}"
    doc = {
        "name": role,
        "statements": [
            {
                "effect": "allow",
                "actions": ["function:deploy", "function:invoke"],
                "resources": [f"{team}-*"],
            }
        ],
    }
    with node.client() as c:
        assert c.post("/v1/roles", json=doc).status_code == 201
    key = node.create_key(role, role)["key"]
    fails = "def handler(event, context):\n    raise ValueError('send it on')\n"

    def deploy(name: str, target: str) -> httpx.Response:
        extra = f"retry: {{attempts: 1}}\ndestinations: {{on_failure: {target}}}\n"
        _, archive = build_bundle(bundle(tmp_path, name, fails, extra))
        with node.client(key) as c:
            return c.post(
                "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
            )

    refused = deploy(f"{team}-src", "probe")
    assert refused.status_code == 403 and "probe" in refused.json()["detail"], refused.text
    (record,) = audit_records(node, refused.headers["x-request-id"])
    assert record["action"] == "function.deploy" and record["outcome"] == "rejected"
    with node.client() as c:
        assert c.get(f"/v1/functions/{team}-src").status_code == 404
    assert deploy(f"{team}-sink", f"{team}-sink").status_code == 201  # itself: allowed
    assert deploy(f"{team}-src", f"{team}-sink").status_code == 201  # inside team-*


def test_throttled_retries_are_not_a_record_each(node: LiveNode, tmp_path: Path) -> None:
    """Ten failing events of a key held to 1 call a second: their retries were refused by
    its rate (429, the attempt given back, tried again at the Retry-After, a second) and
    each refusal was an invocation.attempt record of its own, 84 in 10 s for 30 attempts
    at most: a backlog of N events wrote N records a second while the rate drained them.
    Throttled attempts are audited in aggregate, as the refusal itself is."""
    fails = "def handler(event, context):\n    raise RuntimeError('no')\n"
    retry = "retry: {attempts: 3, backoff_s: 1, max_age_s: 60}\n"
    node.deploy(bundle(tmp_path, "atk-throttled-retries", fails, retry))
    made = node.create_key("atk-throttled", "developer", limits={"rate": "1/second", "burst": 10})
    ids = []
    for _ in range(10):
        r = invoke_async(node, "atk-throttled-retries", {}, key=made["key"])
        assert r.status_code == 202, r.text
        ids.append(r.json()["invocation_id"])
    time.sleep(10)
    records = audit_tail(node, 5000)
    attempts = [
        [r for r in of_invocation(records, i) if r["action"] == "invocation.attempt"] for i in ids
    ]
    assert sum(len(a) for a in attempts) <= 31, [len(a) for a in attempts]
    assert all(len(a) <= 4 for a in attempts), [len(a) for a in attempts]
