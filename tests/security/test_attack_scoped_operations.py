"""A custom role granted `response:manage` and `quota:manage` on some functions only
(`billing-*`) against the functions it was not given: it may not quarantine them, so it
may not throttle them or set their daily quota to nothing either. Against a real node."""

from __future__ import annotations

import secrets

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
