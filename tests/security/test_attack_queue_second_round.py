"""Attacks on schedules and the async queue, second round: a token's queued events run
after its role was changed to deny the function; a ring of destinations that never ends;
a result nested too deep for the node's parser; another function's dead letters hiding a
scoped manager's own; a backlog spread over many functions holding another owner's event;
a destination named before it exists, taken by another developer."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from async_support import audit_tail, bundle, invoke_async, wait_for
from donjon.bundle import build_bundle
from donjon.triggers.queue.destinations import MAX_DESTINATION_CHAIN
from donjon.triggers.queue.service import MAX_LISTED
from harness import LiveNode
from jwt_support import SigningKey, claims, jwks

FAILS_FIRST = (
    "def handler(event, context):\n"
    "    if context.cloudevent['donjonattempt'] == '1':\n"
    "        raise RuntimeError('first attempt fails')\n"
    "    return {'ran': 'after its role denied it'}\n"
)
RETRY = "retry: {attempts: 3, backoff_s: 6, max_age_s: 600}\n"


def test_queued_events_of_a_token_its_role_no_longer_allows_do_not_run(
    node: LiveNode, tmp_path: Path
) -> None:
    """A role changed to deny the function stops the async invocations a token granted that
    role queued, as it stops a key's: the next attempt is refused (403), dead."""
    node.deploy(bundle(tmp_path, "atk-jwt-denied", FAILS_FIRST, RETRY))
    role = "atk-jwt-denied-role"
    allow = {"effect": "allow", "actions": ["function:invoke"], "resources": ["atk-*"]}
    signing = SigningKey.generate("jwt-denied-1", "ES256")
    issuer = {
        "name": "atk-jwt-denied",
        "issuer": "https://jwt-denied.example",
        "audience": "donjon",
        "jwks": jwks(signing),
        "allowed_roles": [role],
    }
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": role, "statements": [allow]})
        assert r.status_code in (200, 201), r.text
        assert c.post("/v1/issuers", json=issuer).status_code == 201
    token = signing.sign(claims("https://jwt-denied.example", "donjon", roles=[role]))
    r = invoke_async(node, "atk-jwt-denied", {}, key=token)
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocation_id"]
    assert wait_for(node, invocation_id, ("failed",))["attempts"] == 1
    deny = {"effect": "deny", "actions": ["function:invoke"], "resources": ["atk-jwt-*"]}
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": role, "statements": [allow, deny]})
        assert r.status_code in (200, 201), r.text
    assert node.invoke("atk-jwt-denied", {}, token).status_code == 403
    dead = wait_for(node, invocation_id)
    assert dead["status"] == "dead", dead
    assert dead["error"]["type"] == "Forbidden"
    assert dead["result"] is None


def test_a_destination_naming_its_own_function_does_not_loop_forever(
    node: LiveNode, tmp_path: Path
) -> None:
    """A function whose on_success is itself (or a ring of destinations) turned one async
    call into an endless chain of calls, each event holding the one before it (one call
    made ~1,000 calls and ~140 MB of events before the nesting broke the node's parser).
    The chain stops at MAX_DESTINATION_CHAIN records: the next is refused and audited."""
    echo = "def handler(event, context):\n    return {'ok': True}\n"
    # A destination must be deployed first: a ring is closed by deploying a again.
    node.deploy(bundle(tmp_path, "atk-dest-ring-a", echo))
    node.deploy(
        bundle(tmp_path, "atk-dest-ring-b", echo, "destinations: {on_success: atk-dest-ring-a}\n")
    )
    node.deploy(
        bundle(tmp_path, "atk-dest-ring-a", echo, "destinations: {on_success: atk-dest-ring-b}\n")
    )
    r = invoke_async(node, "atk-dest-ring-a", {"start": 1})
    assert r.status_code == 202, r.text
    first = r.json()["invocation_id"]
    deadline = time.monotonic() + 60
    refused: list[dict[str, object]] = []
    while time.monotonic() < deadline and not refused:
        time.sleep(0.5)
        refused = [
            x
            for x in audit_tail(node, 5000)
            if x["action"] == "invocation.destination"
            and x["outcome"] == "refused"
            and str(x["target"]).startswith("atk-dest-ring-")  # the shared node's others'
        ]
    records = audit_tail(node, 5000)
    calls = [
        x
        for x in records
        if x["action"] == "function.invoke" and str(x["target"]).startswith("atk-dest-ring-")
    ]
    assert refused, f"no end to the chain: {len(calls)} calls so far"
    assert len(calls) == MAX_DESTINATION_CHAIN + 1, len(calls)
    assert "chain" in str(refused[0]["detail"]), refused[0]
    assert wait_for(node, first)["status"] == "succeeded"


def test_a_result_nested_deeper_than_the_node_parses_is_recorded_once(
    node: LiveNode, tmp_path: Path
) -> None:
    """A function with a destination returning JSON nested 5,000 deep broke the recording of
    its outcome (the record was parsed with no bound on nesting): the invocation stayed
    `running` until its lease expired, then ran again, each attempt. It succeeds once; its
    record's responsePayload is null (too deep to carry)."""
    deep = (
        "import sys\n"
        "sys.setrecursionlimit(20000)\n"
        "def handler(event, context):\n"
        "    value = []\n"
        "    for _ in range(5000):\n"
        "        value = [value]\n"
        "    return value\n"
    )
    sink = "def handler(event, context):\n    return {'kept': event['responsePayload']}\n"
    node.deploy(bundle(tmp_path, "atk-deep-sink", sink))
    node.deploy(
        bundle(tmp_path, "atk-deep-result", deep, "destinations: {on_success: atk-deep-sink}\n")
    )
    r = invoke_async(node, "atk-deep-result", {})
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocation_id"]
    deadline = time.monotonic() + 30
    seen: dict[str, object] = {}
    with node.client() as c:
        while time.monotonic() < deadline and seen.get("status") != "succeeded":
            time.sleep(0.2)
            seen = c.get(f"/v1/invocations/{invocation_id}").json()
    assert seen.get("status") == "succeeded", seen
    assert seen["attempts"] == 1, seen
    records = audit_tail(node, 5000)
    sent = [
        x for x in records if x["action"] == "invocation.enqueue" and x["target"] == "atk-deep-sink"
    ]
    assert len(sent) == 1, sent
    record = wait_for(node, str(sent[0]["detail"]["invocation_id"]))
    assert record["status"] == "succeeded", record
    assert record["result"] == {"kept": None}, record


def test_another_functions_dead_letters_do_not_hide_ones_own_from_a_scoped_listing(
    node: LiveNode, tmp_path: Path
) -> None:
    """A manager allowed dlq:manage on some functions lists them without naming one: the
    listing took the oldest MAX_LISTED dead invocations of every function and then kept
    those it may see, so another tenant's 1,000 older dead events hid all of its own
    (`donjon dlq ls` said there were none)."""
    fails = "def handler(event, context):\n    raise RuntimeError('no')\n"
    once = "retry: {attempts: 1, backoff_s: 1, max_age_s: 600}\n"
    node.deploy(bundle(tmp_path, "atk-dlq-noise", fails, once + "isolation: warm\n"))
    node.deploy(bundle(tmp_path, "atk-dlq-mine", fails, once))

    def send_noise(count: int) -> list[str]:
        ids = []
        with node.client() as c:
            for _ in range(count):
                r = c.post(
                    "/v1/functions/atk-dlq-noise/invoke",
                    content="{}",
                    headers={"prefer": "respond-async"},
                )
                assert r.status_code == 202, r.text
                ids.append(r.json()["invocation_id"])
        return ids

    with ThreadPoolExecutor(4) as clients:  # the noise's events, all before one's own
        ids = [i for part in clients.map(send_noise, [MAX_LISTED // 4] * 4) for i in part]
    assert len(ids) == MAX_LISTED
    wait_for(node, ids[-1])
    deadline = time.monotonic() + 120
    with node.client() as c:
        while time.monotonic() < deadline:
            noise = c.get("/v1/dlq", params={"function": "atk-dlq-noise"}).json()
            if len(noise) >= MAX_LISTED:
                break
            time.sleep(0.5)
    r = invoke_async(node, "atk-dlq-mine", {})
    mine = r.json()["invocation_id"]
    assert wait_for(node, mine)["status"] == "dead"
    role = "atk-dlq-mine-manager"
    allow = {"effect": "allow", "actions": ["dlq:manage"], "resources": ["atk-dlq-mine*"]}
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": role, "statements": [allow]})
        assert r.status_code in (200, 201), r.text
    key = node.create_key("atk-dlq-mine-manager", role)["key"]
    with node.client(key) as c:
        listed = c.get("/v1/dlq")
        assert listed.status_code == 200, listed.text
        assert [d["invocation_id"] for d in listed.json()] == [mine]


def test_a_tenants_backlog_spread_over_many_functions_does_not_hold_anothers_event(
    node: LiveNode, tmp_path: Path
) -> None:
    """The queue's workers took first the events of the functions with the fewest calls
    running, then the oldest: a developer spreading its backlog over more functions than
    there are workers always had one with none running, and another owner's event waited
    behind all of it. Calls are counted by the functions' owner: it is taken by the next
    worker that frees."""
    developer = node.create_key("atk-fair-dev", "developer")["key"]
    slow = "import time\ndef handler(event, context):\n    time.sleep(1.5)\n    return 1\n"
    names = [f"atk-fair-{i}" for i in range(6)]
    for name in names:
        _, archive = build_bundle(bundle(tmp_path, name, slow, "timeout_s: 10\n"))
        with node.client(developer) as c:
            r = c.post("/v1/functions", content=archive, params={})
            assert r.status_code == 201, r.text
    node.deploy(bundle(tmp_path, "atk-fair-victim", "def handler(event, context):\n    return 1\n"))
    backlog = []
    with node.client(developer) as c:
        for _ in range(4):
            for name in names:
                r = c.post(
                    f"/v1/functions/{name}/invoke",
                    content="{}",
                    headers={"prefer": "respond-async"},
                )
                assert r.status_code == 202, r.text
                backlog.append(r.json()["invocation_id"])
    r = invoke_async(node, "atk-fair-victim", {})
    assert r.status_code == 202, r.text
    assert wait_for(node, r.json()["invocation_id"])["status"] == "succeeded"
    with node.client() as c:
        done = [i for i in backlog if c.get(f"/v1/invocations/{i}").json()["status"] == "succeeded"]
    # The workers (4) had each taken one of the backlog when the victim's event came; it
    # is the next taken, not the 24th.
    assert len(done) <= 8, f"{len(done)} of the backlog's {len(backlog)} ran first"
    for invocation_id in backlog:
        wait_for(node, invocation_id)


def test_a_destination_not_deployed_cannot_be_squatted_by_another_developer(
    node: LiveNode, tmp_path: Path
) -> None:
    """A manifest could name as its destination a function not deployed: another
    developer deploying that name then received every failure record, whose
    requestPayload is the first one's callers' event. Refused at deploy (422, nothing
    deployed), as a `permissions.invoke` grant of a function not deployed is."""
    owner = node.create_key("atk-squat-owner", "developer")["key"]
    fails = "def handler(event, context):\n    raise ValueError('no')\n"
    extra = "retry: {attempts: 1}\ndestinations: {on_failure: atk-squat-sink}\n"
    _, archive = build_bundle(bundle(tmp_path, "atk-squat-src", fails, extra))
    with node.client(owner) as c:
        r = c.post("/v1/functions", content=archive)
        assert r.status_code == 422, r.text
        assert "atk-squat-sink" in r.json()["detail"], r.text
    with node.client() as c:
        assert c.get("/v1/functions/atk-squat-src").status_code == 404
