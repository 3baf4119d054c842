"""Least privilege (issue 10, items 1 and 3): function owners, the built-in roles, custom
roles at the API, and key lifetimes, each attack against a real node."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from donjon.bundle import build_bundle
from harness import LiveNode, fresh_source
from sec_support import assert_problem, audit_records


def _function(tmp: Path, name: str, reply: str = "v1") -> Path:
    d = tmp / f"{name}-{secrets.token_hex(3)}"
    d.mkdir()
    (d / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
    )
    (d / "main.py").write_text(f"def handler(event, context):\n    return {{'v': {reply!r}}}\n")
    return d


def _deploy(node: LiveNode, directory: Path, key: str) -> httpx.Response:
    _, archive = build_bundle(directory)
    with node.client(key) as c:
        return c.post(
            "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
        )


def _admins_function(node: LiveNode, tmp: Path) -> str:
    name = f"sec-owned-{secrets.token_hex(3)}"
    assert _deploy(node, _function(tmp, name), node.admin_key).status_code == 201
    return name


def _key(node: LiveNode, role: str, **extra: Any) -> dict[str, Any]:
    with node.client() as c:
        r = c.post("/v1/keys", json={"name": f"sec-{role}", "role": role, **extra})
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def test_developer_cannot_redeploy_an_admins_function(node: LiveNode, tmp_path: Path) -> None:
    """A developer key deploying over a function an admin deployed is refused, audited."""
    name = _admins_function(node, tmp_path)
    dev = _key(node, "developer")["key"]
    r = _deploy(node, _function(tmp_path, name, reply="hijacked"), dev)
    assert_problem(r, 403)
    assert node.invoke(name, {}).json() == {"v": "v1"}
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["outcome"] == "rejected" and "owned by key:" in record["detail"]["statement"]


def test_developer_cannot_delete_an_admins_function(node: LiveNode, tmp_path: Path) -> None:
    """A developer key cannot remove an admin's function; the denial names the decision."""
    name = _admins_function(node, tmp_path)
    dev = _key(node, "developer")["key"]
    with node.client(dev, fresh_source()) as c:
        r = c.delete(f"/v1/functions/{name}")
    assert_problem(r, 403)
    assert node.invoke(name, {}).status_code == 200
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"
    assert "no statement allows" in record["detail"]["statement"]


def test_developer_cannot_read_an_admins_function_or_its_logs(
    node: LiveNode, tmp_path: Path
) -> None:
    """Logs, the manifest and the listing of another's function are closed to a developer."""
    name = _admins_function(node, tmp_path)
    assert node.invoke(name, {}).status_code == 200
    dev = _key(node, "developer")["key"]
    with node.client(dev) as c:
        assert_problem(c.get(f"/v1/functions/{name}/logs"), 403)
        assert_problem(c.get(f"/v1/functions/{name}"), 403)
        listed = c.get("/v1/functions")
    assert listed.status_code == 200
    assert name not in [f["name"] for f in listed.json()]


def test_developer_still_owns_what_it_deploys(node: LiveNode, tmp_path: Path) -> None:
    """A developer deploys, redeploys, reads and deletes its own function; another cannot."""
    dev, other = _key(node, "developer")["key"], _key(node, "developer")["key"]
    name = f"sec-devown-{secrets.token_hex(3)}"
    assert _deploy(node, _function(tmp_path, name), dev).status_code == 201
    assert _deploy(node, _function(tmp_path, name, reply="v2"), dev).status_code == 201
    assert_problem(_deploy(node, _function(tmp_path, name, reply="x"), other), 403)
    with node.client(other) as c:
        assert_problem(c.delete(f"/v1/functions/{name}"), 403)
    with node.client(dev) as c:
        view = c.get(f"/v1/functions/{name}").json()
        assert view["owner"] == view["deployed_by"]
        assert c.get(f"/v1/functions/{name}/logs").status_code == 200
        assert c.delete(f"/v1/functions/{name}").status_code == 204


def test_auditor_cannot_invoke_or_deploy(node: LiveNode, tmp_path: Path) -> None:
    """An auditor reads the audit and metrics, and nothing else: no invoke, deploy or keys."""
    auditor = _key(node, "auditor")["key"]
    assert_problem(node.invoke("probe", {"op": "echo"}, key=auditor), 403)
    assert_problem(_deploy(node, _function(tmp_path, "sec-by-auditor"), auditor), 403)
    with node.client(auditor) as c:
        assert c.get("/v1/audit").status_code == 200
        assert c.get("/metrics").status_code == 200
        assert_problem(c.get("/v1/functions"), 403)
        assert_problem(c.get("/v1/keys"), 403)
        assert_problem(c.post("/v1/keys", json={"name": "x", "role": "admin"}), 403)


def test_custom_role_allows_and_denies_at_the_api(node: LiveNode, tmp_path: Path) -> None:
    """billing-* allowed, billing-admin explicitly denied: the deny wins and is audited."""
    tag = secrets.token_hex(3)
    ok, closed = f"sec-bill{tag}-report", f"sec-bill{tag}-admin"
    for name in (ok, closed):
        assert _deploy(node, _function(tmp_path, name), node.admin_key).status_code == 201
    role = f"sec-bill-{tag}"
    doc = {
        "name": role,
        "statements": [
            {"effect": "allow", "actions": ["function:invoke"], "resources": [f"sec-bill{tag}-*"]},
            {"effect": "deny", "actions": ["function:invoke"], "resources": [closed]},
        ],
    }
    with node.client() as c:
        assert c.post("/v1/roles", json=doc).status_code == 201
    key = _key(node, role)["key"]
    assert node.invoke(ok, {}, key=key).status_code == 200
    r = node.invoke(closed, {}, key=key, source=fresh_source())
    assert_problem(r, 403)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["detail"]["statement"] == f"{role}#1"
    assert_problem(node.invoke("probe", {"op": "echo"}, key=key, source=fresh_source()), 403)


def test_bad_role_documents_change_nothing(node: LiveNode) -> None:
    """Unknown action, empty statements, bad pattern, unknown field, built-in name: 400."""
    bad = [
        {"name": "sec-bad", "statements": []},
        {
            "name": "sec-bad",
            "statements": [{"effect": "allow", "actions": ["x:y"], "resources": ["*"]}],
        },
        {
            "name": "sec-bad",
            "statements": [{"effect": "allow", "actions": ["audit:read"], "resources": ["a*b"]}],
        },
        {
            "name": "sec-bad",
            "extra": 1,
            "statements": [{"effect": "allow", "actions": ["audit:read"], "resources": ["*"]}],
        },
        {
            "name": "admin",
            "statements": [{"effect": "allow", "actions": ["audit:read"], "resources": ["*"]}],
        },
    ]
    with node.client() as c:
        for doc in bad:
            assert_problem(c.post("/v1/roles", json=doc), 400)
        names = [r["name"] for r in c.get("/v1/roles").json()]
        assert "sec-bad" not in names
        assert_problem(c.delete("/v1/roles/admin"), 400)


def test_role_held_by_a_key_is_not_removed_silently(node: LiveNode) -> None:
    """Removing a role a live key holds is refused (409) naming the key, unless forced."""
    role = f"sec-held-{secrets.token_hex(3)}"
    doc = {
        "name": role,
        "statements": [{"effect": "allow", "actions": ["audit:read"], "resources": ["*"]}],
    }
    with node.client() as c:
        assert c.post("/v1/roles", json=doc).status_code == 201
    created = _key(node, role)
    with node.client(created["key"]) as c:
        assert c.get("/v1/audit").status_code == 200
    with node.client() as c:
        body = assert_problem(c.delete(f"/v1/roles/{role}"), 409)
        assert created["id"] in body["detail"]
        forced = c.delete(f"/v1/roles/{role}", params={"force": "true"})
        assert forced.json()["keys_left_without_rights"] == [created["id"]]
    with node.client(created["key"]) as c:
        assert_problem(c.get("/v1/audit"), 403)


def test_non_admin_cannot_manage_roles(node: LiveNode) -> None:
    """role:manage is an admin's: a developer cannot grant itself a wider role."""
    dev = _key(node, "developer")["key"]
    doc = {
        "name": "sec-wide",
        "statements": [{"effect": "allow", "actions": ["key:manage"], "resources": ["*"]}],
    }
    with node.client(dev) as c:
        assert_problem(c.post("/v1/roles", json=doc), 403)
        assert_problem(c.get("/v1/roles"), 403)


def _wait_for_status(node: LiveNode, key: str, status: int, seconds: float = 60) -> httpx.Response:
    """The first answer of `status` to a call with `key`, then one more call's answer: the
    first may be a call whose head was checked just before the credential ended and that
    was refused on its way (its record's reason says so); the next one's head is checked
    after, and refused there."""
    deadline = time.monotonic() + seconds
    while True:
        r = node.invoke("probe", {"op": "echo"}, key=key, source=fresh_source())
        if r.status_code == status:
            return node.invoke("probe", {"op": "echo"}, key=key, source=fresh_source())
        if time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_expired_key_gets_401(node: LiveNode) -> None:
    """A key made to expire in a second is refused once it has, and the refusal is audited."""
    created = _key(node, "invoker", expires_in_s=1)
    r = _wait_for_status(node, created["key"], 401)
    assert_problem(r, 401)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["detail"]["reason"] == "expired key"


def test_rotated_key_keeps_working_only_for_the_overlap(node: LiveNode) -> None:
    """After `rotate`, old and new secrets both work; once the overlap ends the old gets 401."""
    created = _key(node, "invoker")
    with node.client() as c:
        r = c.post(f"/v1/keys/{created['id']}/rotate", json={"overlap_s": 2})
    assert r.status_code == 201, r.text
    new = r.json()["key"]
    assert new != created["key"] and new.split("_")[1] == created["id"]
    assert node.invoke("probe", {"op": "echo"}, key=new).status_code == 200
    old = _wait_for_status(node, created["key"], 401)
    assert_problem(old, 401)
    (record,) = audit_records(node, old.headers["x-request-id"])
    assert record["detail"]["reason"] == "rotated key past its overlap"
    assert node.invoke("probe", {"op": "echo"}, key=new).status_code == 200


def test_rotation_with_an_overlap_keeps_both_secrets(node: LiveNode) -> None:
    """Within the overlap both secrets of a rotated key work, with the same identity."""
    created = _key(node, "invoker")
    with node.client() as c:
        new = c.post(f"/v1/keys/{created['id']}/rotate", json={"overlap_s": 3600}).json()["key"]
    for key in (created["key"], new):
        assert node.invoke("probe", {"op": "echo"}, key=key).status_code == 200


def test_revoked_key_gets_401_and_the_audit_says_revoked(node: LiveNode) -> None:
    """A revoked key's refusal is audited as such (the caller learns only 401)."""
    created = _key(node, "invoker")
    with node.client() as c:
        assert c.delete(f"/v1/keys/{created['id']}").status_code == 204
    r = node.invoke("probe", {"op": "echo"}, key=created["key"], source=fresh_source())
    assert_problem(r, 401)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["detail"]["reason"] == "revoked key"


def test_custom_key_manager_cannot_mint_an_admin_key(node: LiveNode) -> None:
    """A custom role granted key:manage creates keys of its own role only, never an admin's."""
    role = f"sec-keyman-{secrets.token_hex(3)}"
    doc = {
        "name": role,
        "statements": [{"effect": "allow", "actions": ["key:manage"], "resources": ["*"]}],
    }
    with node.client() as c:
        assert c.post("/v1/roles", json=doc).status_code == 201
    manager = _key(node, role)["key"]
    with node.client(manager, fresh_source()) as c:
        r = c.post("/v1/keys", json={"name": "sec-escalated", "role": "admin"})
        assert_problem(r, 403)
        assert c.post("/v1/keys", json={"name": "sec-peer", "role": role}).status_code == 201
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"


def test_custom_role_manager_cannot_rewrite_its_own_role(node: LiveNode) -> None:
    """A custom role holding role:manage alone rewriting itself into every action (then
    reading the keys) is refused: 403, audited, and its key still cannot list keys."""
    role = f"sec-rolemgr-{secrets.token_hex(3)}"
    manage = {"effect": "allow", "actions": ["role:manage"], "resources": ["*"]}
    with node.client() as c:
        assert c.post("/v1/roles", json={"name": role, "statements": [manage]}).status_code == 201
    manager = _key(node, role)["key"]
    everything = {"effect": "allow", "actions": ["key:manage", "role:manage"], "resources": ["*"]}
    with node.client(manager, fresh_source()) as c:
        r = c.post("/v1/roles", json={"name": role, "statements": [everything]})
        assert_problem(r, 403)
        assert_problem(c.get("/v1/keys"), 403)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"
    with node.client(manager, fresh_source()) as c:
        assert_problem(c.delete(f"/v1/roles/{role}"), 403)
