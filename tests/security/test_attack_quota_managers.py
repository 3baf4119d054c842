"""A custom role granted `quota:manage` (delegated quota management, docs/limits.md
"Quotas") against the quotas that bind its own calls: its key's and its roles'."""

from __future__ import annotations

import secrets

from harness import LiveNode, fresh_source
from sec_support import assert_problem, audit_records


def _quota_manager_role(node: LiveNode) -> str:
    role = f"sec-qm-{secrets.token_hex(3)}"
    statements = [
        {"effect": "allow", "actions": ["quota:manage"], "resources": ["*"]},
        {"effect": "allow", "actions": ["function:invoke"], "resources": ["*"]},
    ]
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": role, "statements": statements})
    assert r.status_code == 201, r.text
    return role


def test_a_quota_manager_cannot_lift_the_quotas_that_bind_itself(node: LiveNode) -> None:
    """A key whose daily quota (its key's, its role's) an admin set, and whose role may
    manage quotas, raised and removed them and called on: refused (403, audited), the
    quotas unchanged; a quota on a function, or on another key, it still sets."""
    role = _quota_manager_role(node)
    manager = node.create_key("sec-qm", role)
    other = node.create_key("sec-qm-other", "invoker")
    own_key, own_role = f"key:{manager['id']}", f"role:{role}"
    with node.client() as c:
        for subject in (own_key, own_role):
            assert c.put(f"/v1/quotas/{subject}", json={"invocations": 1}).status_code == 201
    assert node.invoke("probe", {}, manager["key"]).status_code == 200
    assert_problem(node.invoke("probe", {}, manager["key"]), 429)
    with node.client(manager["key"], fresh_source()) as c:
        raised = c.put(f"/v1/quotas/{own_key}", json={"invocations": 1_000_000})
        removed = c.delete(f"/v1/quotas/{own_key}")
        role_raised = c.put(f"/v1/quotas/{own_role}", json={"invocations": 1_000_000})
        role_removed = c.delete(f"/v1/quotas/{own_role}")
        elsewhere = c.put(f"/v1/quotas/key:{other['id']}", json={"invocations": 5})
    for r in (raised, removed, role_raised, role_removed):
        assert_problem(r, 403)
    (record,) = audit_records(node, raised.headers["x-request-id"])
    assert record["action"] == "authz.denied"
    assert elsewhere.status_code == 201, elsewhere.text
    assert_problem(node.invoke("probe", {}, manager["key"]), 429)
    with node.client() as c:
        quotas = {q["subject"]: q for q in c.get("/v1/quotas").json()}
    assert quotas[own_key]["invocations"]["limit"] == 1
    assert quotas[own_role]["invocations"]["limit"] == 1
