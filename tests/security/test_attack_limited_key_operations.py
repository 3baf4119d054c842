"""A key limited to some functions (`functions`) whose role allows `dlq:manage`,
`response:manage` or `quota:manage` on every function, against the functions the key
was not given: the limit held for the `function:*` actions alone, so such a key read,
redrove and purged any function's dead events and quarantined or zeroed any function.
Against a real node."""

from __future__ import annotations

import secrets
from pathlib import Path

from async_support import assert_dead_reach, bundle, invoke_async, wait_for
from harness import LiveNode, fresh_source
from sec_support import assert_problem, audit_records

FAILS = "def handler(event, context):\n    raise ValueError('dead on arrival')\n"
_OPS = ["dlq:manage", "response:manage", "quota:manage"]


def _limited_key(node: LiveNode, functions: list[str]) -> str:
    """A key limited to `functions`, of a role allowed the operators' actions on `*`."""
    role = f"sec-ops-{secrets.token_hex(3)}"
    statement = {"effect": "allow", "actions": _OPS, "resources": ["*"]}
    with node.client() as c:
        assert c.post("/v1/roles", json={"name": role, "statements": [statement]}).is_success
    key: str = node.create_key("sec-limited-ops", role, functions=functions)["key"]
    return key


def test_a_limited_key_reaches_no_other_functions_dead_events(
    node: LiveNode, tmp_path: Path
) -> None:
    """Another function's dead event (anyone's data) is left out of the list, 403 to show,
    redrive or purge; the key's own function's dead event it still reads."""
    tag = secrets.token_hex(3)
    other_fn, mine_fn = f"sec-dlq-other-{tag}", f"sec-dlq-mine-{tag}"
    once = "retry: {attempts: 1, backoff_s: 0.1}\n"
    node.deploy(bundle(tmp_path, other_fn, FAILS, once))
    node.deploy(bundle(tmp_path, mine_fn, FAILS, once))
    key = _limited_key(node, [mine_fn])
    other = invoke_async(node, other_fn, {"card": "OTHER-TENANT-DATA"}).json()
    mine = invoke_async(node, mine_fn, {"n": 1}).json()
    for invocation in (other, mine):
        assert wait_for(node, invocation["invocation_id"])["status"] == "dead"
    assert_dead_reach(node, key, fresh_source(), mine["invocation_id"], other["invocation_id"])


def test_a_limited_key_cannot_quarantine_or_zero_another_function(node: LiveNode) -> None:
    """Quarantining, throttling or zeroing the quota of `probe`, outside the key's
    functions: 403, audited, and nothing is set."""
    key = _limited_key(node, [f"sec-mine-{secrets.token_hex(3)}"])
    with node.client(key, fresh_source()) as c:
        r = c.post("/v1/functions/probe/quarantine", json={"reason": "x"})
    assert_problem(r, 403)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"
    with node.client(key, fresh_source()) as c:
        answers = [
            c.put("/v1/throttles/function:probe", json={"reason": "x", "duration_s": 60}),
            c.put("/v1/quotas/function:probe", json={"invocations": 0}),
        ]
    assert [a.status_code for a in answers] == [403, 403]
    with node.client() as c:
        assert "function:probe" not in [q["subject"] for q in c.get("/v1/quotas").json()]
        responses = c.get("/v1/responses").json()
    assert "function:probe" not in [t["subject"] for t in responses["throttles"]]
    assert node.invoke("probe", {"op": "echo"}).status_code == 200
