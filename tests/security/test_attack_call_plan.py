"""A keyed caller's checks kept between calls (gateway/call_plan.py) never outlive a change.

The gateway resolves once per API key and function version what every call of that
pair shares (the policy's decision, the caller's limits, the body limit) and keeps
it. Each attack below warms that plan with an allowed call, changes what it was
resolved from (a role's grant or limits, the function's manifest, the key itself),
then calls again at once: the very next call must see the change.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from harness import LiveNode, fresh_source
from sec_support import assert_problem, audit_records


def _role(node: LiveNode, name: str, statements: list[dict[str, Any]], **extra: Any) -> None:
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": name, "statements": statements, **extra})
    assert r.status_code in (200, 201), r.text


def _invoke_statement(*functions: str) -> dict[str, Any]:
    return {"effect": "allow", "actions": ["function:invoke"], "resources": list(functions)}


def _call(node: LiveNode, name: str, key: str, event: Any = None) -> httpx.Response:
    return node.invoke(
        name, {"op": "echo"} if event is None else event, key=key, source=fresh_source()
    )


def _key_of_role(node: LiveNode, role: str) -> str:
    return str(node.create_key(f"plan-{secrets.token_hex(3)}", role)["key"])


def test_removed_grant_is_refused_on_the_next_call(node: LiveNode) -> None:
    """A role that no longer grants invoke: the key's next call is 403, audited."""
    role = f"sec-plan-grant-{secrets.token_hex(3)}"
    _role(node, role, [_invoke_statement("probe-warm")])
    key = _key_of_role(node, role)
    for _ in range(2):  # the second call is served from the kept plan
        assert _call(node, "probe-warm", key).status_code == 200
    _role(node, role, [{"effect": "allow", "actions": ["function:read"], "resources": ["*"]}])
    r = _call(node, "probe-warm", key)
    assert_problem(r, 403)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"
    assert record["detail"]["role"] == role


def test_added_deny_is_refused_on_the_next_call(node: LiveNode) -> None:
    """An explicit deny added to the key's role: its next call is 403."""
    role = f"sec-plan-deny-{secrets.token_hex(3)}"
    _role(node, role, [_invoke_statement("*")])
    key = _key_of_role(node, role)
    assert _call(node, "probe-warm", key).status_code == 200
    deny = {"effect": "deny", "actions": ["function:invoke"], "resources": ["probe-warm"]}
    _role(node, role, [_invoke_statement("*"), deny])
    assert_problem(_call(node, "probe-warm", key), 403)


def test_role_limits_tightened_apply_on_the_next_calls(node: LiveNode) -> None:
    """A role given a rate of one call an hour: its key is refused (429) within two calls,
    though its plan was made under the server's (much larger) default rate."""
    role = f"sec-plan-limits-{secrets.token_hex(3)}"
    _role(node, role, [_invoke_statement("probe-warm")])
    key = _key_of_role(node, role)
    for _ in range(3):
        assert _call(node, "probe-warm", key).status_code == 200
    _role(node, role, [_invoke_statement("probe-warm")], limits={"rate": "1/hour", "burst": 1})
    statuses = [_call(node, "probe-warm", key).status_code for _ in range(2)]
    assert statuses[-1] == 429, statuses


def _write(root: Path, name: str, extra: str) -> Path:
    d = root / f"{name}-{secrets.token_hex(3)}"
    d.mkdir()
    (d / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
        f"isolation: warm\n{extra}"
    )
    (d / "main.py").write_text("def handler(event, context):\n    return {'got': len(event)}\n")
    return d


def test_redeployed_body_limit_and_schema_apply_on_the_next_call(
    node: LiveNode, tmp_path: Path
) -> None:
    """A redeploy with a smaller `limits.body` and a new input_schema: the next call of the
    same key is refused by both (413, then 422), not served under the old version's."""
    name = f"sec-plan-redeploy-{secrets.token_hex(3)}"
    node.deploy(_write(tmp_path, name, "limits: {body: 4KiB}\n"))
    key = str(node.create_key(f"plan-{secrets.token_hex(3)}", "invoker", [name])["key"])
    big = {"pad": "x" * 2000}
    for _ in range(2):
        assert _call(node, name, key, big).status_code == 200
    schema = "limits: {body: 1KiB}\ninput_schema: {type: object, required: [url]}\n"
    node.deploy(_write(tmp_path, name, schema))
    assert_problem(_call(node, name, key, big), 413)
    assert_problem(_call(node, name, key, {"pad": "x"}), 422)
    assert _call(node, name, key, {"url": "u"}).status_code == 200


def test_removed_function_is_not_found_on_the_next_call(node: LiveNode, tmp_path: Path) -> None:
    """A function removed after a key's calls: its next call is 404, not a kept plan's run."""
    name = f"sec-plan-removed-{secrets.token_hex(3)}"
    node.deploy(_write(tmp_path, name, ""))
    key = str(node.create_key(f"plan-{secrets.token_hex(3)}", "invoker", [name])["key"])
    assert _call(node, name, key).status_code == 200
    with node.client() as c:
        assert c.delete(f"/v1/functions/{name}").status_code in (200, 204)
    assert_problem(_call(node, name, key), 404)


def test_revoked_key_is_refused_on_the_next_call(node: LiveNode) -> None:
    """A key revoked between two calls: the next is 401 (the key is checked every call)."""
    created = node.create_key(f"plan-{secrets.token_hex(3)}", "invoker")
    key = str(created["key"])
    for _ in range(2):
        assert _call(node, "probe-warm", key).status_code == 200
    with node.client() as c:
        assert c.delete(f"/v1/keys/{created['id']}").status_code in (200, 204)
    assert_problem(_call(node, "probe-warm", key), 401)


def test_expired_key_is_refused_once_expired(node: LiveNode) -> None:
    """A key that expires after its plan was made: refused (401) once its time is up."""
    with node.client() as c:
        r = c.post(
            "/v1/keys",
            json={"name": f"plan-{secrets.token_hex(3)}", "role": "invoker", "expires_in_s": 2},
        )
    assert r.status_code == 201, r.text
    created = r.json()
    key = str(created["key"])
    for _ in range(2):
        assert _call(node, "probe-warm", key).status_code == 200
    time.sleep(max(0.0, float(created["expires_at"]) - time.time()) + 0.2)
    assert_problem(_call(node, "probe-warm", key), 401)
