"""A custom role granted `response:manage`, `quota:manage` or `dlq:manage` on some
functions only (`billing-*`) against the functions it was not given: it may not
quarantine them, so it may not throttle them or set their daily quota to nothing either,
nor read or redrive their dead events. Against a real node."""

from __future__ import annotations

import secrets
from pathlib import Path

from async_support import assert_dead_reach, bundle, invoke_async, wait_for
from harness import LiveNode, fresh_source
from sec_support import assert_problem, audit_records


def _scoped_key(node: LiveNode) -> str:
    role = f"billing-ops-{secrets.token_hex(3)}"
    statement = {
        "effect": "allow",
        "actions": ["response:manage", "quota:manage"],
        "resources": ["billing-*"],
    }
    with node.client() as c:
        assert (
            c.post("/v1/roles", json={"name": role, "statements": [statement]}).status_code == 201
        )
    key: str = node.create_key("sec-billing-ops", role)["key"]
    return key


def test_scoped_operator_cannot_throttle_another_function(node: LiveNode) -> None:
    """Throttling function:probe (outside billing-*) is refused like its quarantine: 403,
    audited, and probe keeps serving at its own rate."""
    key = _scoped_key(node)
    with node.client(key, fresh_source()) as c:
        assert_problem(c.post("/v1/functions/probe/quarantine", json={"reason": "x"}), 403)
    with node.client(key, fresh_source()) as c:  # a source of its own: its denial is a record
        r = c.put("/v1/throttles/function:probe", json={"reason": "starve it", "duration_s": 60})
    assert_problem(r, 403)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"
    with node.client() as c:
        throttled = [t["subject"] for t in c.get("/v1/responses").json()["throttles"]]
    assert "function:probe" not in throttled


def test_scoped_operator_cannot_zero_another_functions_quota(node: LiveNode) -> None:
    """Setting function:probe's daily quota to 0 (it would refuse every call until
    midnight) or removing its quota is refused: 403, and no quota is set."""
    key = _scoped_key(node)
    with node.client(key, fresh_source()) as c:
        r = c.put("/v1/quotas/function:probe", json={"invocations": 0})
        gone = c.delete("/v1/quotas/function:probe")
    assert_problem(r, 403)
    assert_problem(gone, 403)
    with node.client() as c:
        subjects = [q["subject"] for q in c.get("/v1/quotas").json()]
    assert "function:probe" not in subjects
    assert node.invoke("probe", {}).status_code == 200


FAILS = "def handler(event, context):\n    raise ValueError('dead on arrival')\n"


def test_scoped_dlq_manager_reaches_only_its_functions_dead_events(
    node: LiveNode, tmp_path: Path
) -> None:
    """A role allowed dlq:manage on billing-* lists, shows and redrives billing functions'
    dead events only: another function's (its event may be anyone's data) is left out of
    the list, 403 to show, redrive or purge, and 404 as an invocation."""
    role = f"billing-dlq-{secrets.token_hex(3)}"
    statement = {"effect": "allow", "actions": ["dlq:manage"], "resources": ["billing-*"]}
    with node.client() as c:
        assert (
            c.post("/v1/roles", json={"name": role, "statements": [statement]}).status_code == 201
        )
    key = node.create_key("sec-billing-dlq", role)["key"]
    once = "retry: {attempts: 1, backoff_s: 0.1}\n"
    node.deploy(bundle(tmp_path, "sec-dlq-other", FAILS, once))
    node.deploy(bundle(tmp_path, "billing-dlq", FAILS, once))
    other = invoke_async(node, "sec-dlq-other", {"card": "OTHER-TENANT-DATA"}).json()
    mine = invoke_async(node, "billing-dlq", {"n": 1}).json()
    for invocation in (other, mine):
        assert wait_for(node, invocation["invocation_id"])["status"] == "dead"
    assert_dead_reach(node, key, fresh_source(), mine["invocation_id"], other["invocation_id"])


def test_scoped_operator_cannot_throttle_or_free_a_principal_or_source(node: LiveNode) -> None:
    """A role allowed response:manage on billing-* names no principal or source: throttling
    another key (the admin's) or lifting the throttle an admin set on one is refused, 403,
    audited, and the throttles stay as they were."""
    key = _scoped_key(node)
    victim = node.create_key("sec-throttle-victim", "invoker")["id"]
    held = node.create_key("sec-throttle-held", "invoker")["id"]
    with node.client() as c:
        r = c.put(f"/v1/throttles/principal:key:{held}", json={"reason": "looking into it"})
    assert r.status_code == 201, r.text
    with node.client(key, fresh_source()) as c:
        put = c.put(f"/v1/throttles/principal:key:{victim}", json={"reason": "starve it"})
    with node.client(key, fresh_source()) as c:
        lifted = c.delete(f"/v1/throttles/principal:key:{held}")
    assert_problem(put, 403)
    assert_problem(lifted, 403)
    for r in (put, lifted):
        (record,) = audit_records(node, r.headers["x-request-id"])
        assert record["action"] == "authz.denied"
    with node.client() as c:
        throttled = [t["subject"] for t in c.get("/v1/responses").json()["throttles"]]
        assert c.delete(f"/v1/throttles/principal:key:{held}").status_code == 204
    assert f"principal:key:{victim}" not in throttled
    assert f"principal:key:{held}" in throttled


def test_scoped_operator_cannot_zero_a_keys_or_roles_quota(node: LiveNode) -> None:
    """A role allowed quota:manage on billing-* may not set another key's or a whole
    role's daily quota to nothing (every invoker refused until midnight): 403, unset."""
    key = _scoped_key(node)
    victim = node.create_key("sec-quota-victim", "invoker")["id"]
    with node.client(key, fresh_source()) as c:
        answers = [
            c.put(f"/v1/quotas/key:{victim}", json={"invocations": 0}),
            c.put("/v1/quotas/role:invoker", json={"invocations": 0}),
        ]
    assert [a.status_code for a in answers] == [403, 403], [a.text for a in answers]
    with node.client() as c:
        subjects = [q["subject"] for q in c.get("/v1/quotas").json()]
    assert f"key:{victim}" not in subjects and "role:invoker" not in subjects
