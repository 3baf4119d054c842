"""A custom role granted `key:manage` against the keys it does not hold: an admin's key,
or a key wider than its own (another function reach), each attack against a real node.

`key:manage` outside the built-in admin role mints only keys of the maker's own role
(test_attack_policy.py); these attacks go around that through rotate (which hands back
the rotated key's new secret), revoke, and a key made without the maker's function limit.
"""

from __future__ import annotations

import secrets
from typing import Any

from harness import LiveNode, fresh_source
from jwt_support import SigningKey, claims, jwks
from sec_support import assert_problem, audit_records


def _manager_role(node: LiveNode, *, invoke: bool = False) -> str:
    """A custom role with key:manage (and function:invoke on every function, if asked)."""
    role = f"sec-km-{secrets.token_hex(3)}"
    statements: list[dict[str, Any]] = [
        {"effect": "allow", "actions": ["key:manage"], "resources": ["*"]}
    ]
    if invoke:
        statements.append({"effect": "allow", "actions": ["function:invoke"], "resources": ["*"]})
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": role, "statements": statements})
    assert r.status_code == 201, r.text
    return role


def test_custom_key_manager_cannot_rotate_an_admin_key(node: LiveNode) -> None:
    """Rotating an admin's key would hand the manager its new secret: refused, audited,
    and the admin key keeps its secret."""
    victim = node.create_key("sec-victim-admin", "admin")
    manager = node.create_key("sec-km", _manager_role(node))["key"]
    with node.client(manager, fresh_source()) as c:
        r = c.post(f"/v1/keys/{victim['id']}/rotate", json={"overlap_s": 0})
    assert_problem(r, 403)
    assert "key" not in r.json()
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"
    with node.client(victim["key"]) as c:
        assert c.get("/v1/keys").status_code == 200


def test_custom_key_manager_cannot_revoke_an_admin_key(node: LiveNode) -> None:
    """Revoking an admin's key (locking the admins out) is refused, audited."""
    victim = node.create_key("sec-victim-admin", "admin")
    manager = node.create_key("sec-km", _manager_role(node))["key"]
    with node.client(manager, fresh_source()) as c:
        r = c.delete(f"/v1/keys/{victim['id']}")
    assert_problem(r, 403)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"
    with node.client(victim["key"]) as c:
        assert c.get("/v1/keys").status_code == 200


def test_function_limited_key_manager_cannot_mint_an_unlimited_key(node: LiveNode) -> None:
    """A key limited to one function cannot make a key of its role for every function."""
    role = _manager_role(node, invoke=True)
    limited = node.create_key("sec-km-limited", role, functions=["probe"])["key"]
    assert node.invoke("sec-reply", {}, limited).status_code == 403
    with node.client(limited, fresh_source()) as c:
        wide = c.post("/v1/keys", json={"name": "sec-km-wide", "role": role})
        other = c.post(
            "/v1/keys", json={"name": "sec-km-other", "role": role, "functions": ["sec-reply"]}
        )
        same = c.post(
            "/v1/keys", json={"name": "sec-km-same", "role": role, "functions": ["probe"]}
        )
    assert_problem(wide, 403)
    assert_problem(other, 403)
    assert same.status_code == 201, same.text


def test_function_limited_key_manager_cannot_rotate_a_wider_peer(node: LiveNode) -> None:
    """Rotating a key of the same role but a wider function reach is refused: its new secret
    would reach what the manager's key does not."""
    role = _manager_role(node, invoke=True)
    wide = node.create_key("sec-km-wide", role)
    limited = node.create_key("sec-km-limited", role, functions=["probe"])["key"]
    with node.client(limited, fresh_source()) as c:
        r = c.post(f"/v1/keys/{wide['id']}/rotate", json={"overlap_s": 0})
    assert_problem(r, 403)
    assert node.invoke("sec-reply", {}, wide["key"]).status_code == 200


def test_jwt_key_manager_cannot_mint_a_key_without_its_denies(node: LiveNode) -> None:
    """A JWT holding invoker, a role denying one function and a custom key:manage: a key of
    its built-in role would shed that deny (a key holds one role) and outlive the token.
    Refused; the JWT itself stays denied the function."""
    tag = secrets.token_hex(3)
    no_reply, manager = f"sec-no-reply-{tag}", _manager_role(node)
    deny = {"effect": "deny", "actions": ["function:invoke"], "resources": ["sec-reply"]}
    key = SigningKey.generate(f"km-{tag}", "ES256")
    iss = f"https://km-{tag}.example"
    with node.client() as c:
        assert c.post("/v1/roles", json={"name": no_reply, "statements": [deny]}).status_code == 201
        issuer = {
            "name": f"sec-km-{tag}",
            "issuer": iss,
            "audience": "donjon",
            "jwks": jwks(key),
            "allowed_roles": ["invoker", no_reply, manager],
        }
        assert c.post("/v1/issuers", json=issuer).status_code == 201
    token = key.sign(claims(iss, "donjon", roles=["invoker", no_reply, manager]))
    assert node.invoke("sec-reply", {}, token).status_code == 403
    with node.client(token, fresh_source()) as c:
        r = c.post("/v1/keys", json={"name": "sec-km-shed", "role": "invoker"})
    assert_problem(r, 403)


def _bounded_manager(node: LiveNode, role: str) -> str:
    """A key of `role` that expires in an hour, held to 5 calls a second, burst 5."""
    with node.client() as c:
        r = c.post(
            "/v1/keys",
            json={
                "name": "sec-km-bounded",
                "role": role,
                "expires_in_s": 3600,
                "rate": "5/second",
                "burst": 5,
                "concurrency": 2,
            },
        )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def test_a_bounded_key_manager_mints_no_looser_key(node: LiveNode) -> None:
    """A key that expires in an hour and is held to 5 calls a second mints no key that
    never expires, none of 500 a second and none left to the defaults; one within its own
    bounds is made."""
    role = _manager_role(node)
    manager = _bounded_manager(node, role)
    bounded = {"rate": "5/second", "burst": 5, "concurrency": 2, "expires_in_s": 600}
    looser: list[dict[str, Any]] = [
        {**bounded, "expires_in_s": None},
        {**bounded, "expires_in_s": 7200},
        {**bounded, "rate": "500/second"},
        {**bounded, "rate": "301/minute"},
        {**bounded, "burst": 6},
        {**bounded, "concurrency": None},
        {"expires_in_s": 600},
    ]
    with node.client(manager, fresh_source()) as c:
        for i, fields in enumerate(looser):
            body = {"name": "sec-km-minted", "role": role, **fields}
            r = c.post("/v1/keys", json={k: v for k, v in body.items() if v is not None})
            assert_problem(r, 403)
            if i == 0:  # the window's first denial is written at once, the rest counted
                (record,) = audit_records(node, r.headers["x-request-id"])
                assert record["action"] == "authz.denied"
                assert "outlive the caller's own key" in record["detail"]["reason"]
        r = c.post("/v1/keys", json={"name": "sec-km-minted", "role": role, **bounded})
        assert r.status_code == 201, r.text
        r = c.post(
            "/v1/keys", json={**bounded, "name": "sec-km-slower", "role": role, "rate": "60/minute"}
        )
        assert r.status_code == 201, r.text


def test_a_bounded_key_manager_rotates_no_looser_peer(node: LiveNode) -> None:
    """Rotating hands back the secret: a peer key of the same role that never expires is
    not the bounded manager's to take; its own key it still rotates."""
    role = _manager_role(node)
    peer = node.create_key("sec-km-peer", role)
    manager = _bounded_manager(node, role)
    with node.client(manager, fresh_source()) as c:
        r = c.post(f"/v1/keys/{peer['id']}/rotate", json={"overlap_s": 0})
        assert_problem(r, 403)
        own = manager.split("_")[1]
        r = c.post(f"/v1/keys/{own}/rotate", json={"overlap_s": 0})
    assert r.status_code == 201, r.text


def _jwt_manager(node: LiveNode, role: str) -> str:
    """A token (five minutes left) of an issuer allowed to grant `role` alone."""
    tag = secrets.token_hex(3)
    key = SigningKey.generate(f"kmj-{tag}", "ES256")
    iss = f"https://kmj-{tag}.example"
    with node.client() as c:
        issuer = {
            "name": f"sec-kmj-{tag}",
            "issuer": iss,
            "audience": "donjon",
            "jwks": jwks(key),
            "allowed_roles": [role],
        }
        assert c.post("/v1/issuers", json=issuer).status_code == 201
    return key.sign(claims(iss, "donjon", roles=[role]))


def test_a_jwt_key_manager_mints_no_key_that_outlives_its_token(node: LiveNode) -> None:
    """A token that ends in five minutes minted a key that never expired: the key would be
    the token's rights kept for ever. Refused, and for an hour too; a key that ends within
    the token's time is made, and rotating a peer that never expires is refused."""
    role = _manager_role(node)
    peer = node.create_key("sec-kmj-peer", role)
    token = _jwt_manager(node, role)
    with node.client(token, fresh_source()) as c:
        forever = c.post("/v1/keys", json={"name": "sec-kmj-forever", "role": role})
        hour = c.post("/v1/keys", json={"name": "sec-kmj-hour", "role": role, "expires_in_s": 3600})
        rotated = c.post(f"/v1/keys/{peer['id']}/rotate", json={"overlap_s": 0})
        brief = c.post("/v1/keys", json={"name": "sec-kmj-brief", "role": role, "expires_in_s": 60})
    assert_problem(forever, 403)
    (record,) = audit_records(node, forever.headers["x-request-id"])
    assert "outlive the caller's own token" in record["detail"]["reason"]
    assert_problem(hour, 403)
    assert_problem(rotated, 403)
    assert "key" not in rotated.json()
    assert brief.status_code == 201, brief.text


def test_a_key_left_to_the_defaults_mints_no_key_set_above_them(node: LiveNode) -> None:
    """A key that sets no limits of its own is held to the server's (1,000 calls a second,
    burst 1,000, 64 at once here): it minted keys set to a million a second. Refused for
    each limit; a key set below the defaults, or left to them, is made."""
    role = _manager_role(node)
    manager = node.create_key("sec-km-default", role)["key"]
    above: list[dict[str, Any]] = [
        {"rate": "1000000/second"},
        {"rate": "1001/second", "burst": 10},
        {"burst": 100000},
        {"concurrency": 65},
    ]
    with node.client(manager, fresh_source()) as c:
        for fields in above:
            r = c.post("/v1/keys", json={"name": "sec-km-above", "role": role, **fields})
            assert_problem(r, 403)
        below = {"rate": "10/second", "burst": 10, "concurrency": 4}
        made = [
            c.post("/v1/keys", json={"name": "sec-km-below", "role": role, **below}),
            c.post("/v1/keys", json={"name": "sec-km-same", "role": role}),
        ]
    assert [r.status_code for r in made] == [201, 201], [r.text for r in made]


def test_a_key_manager_under_a_daily_quota_mints_no_key_to_go_on_with(node: LiveNode) -> None:
    """A key's daily quota (`key:<id>`) binds that key alone: a manager whose quota was spent
    minted a key of its own role, bound by no quota, and called on with it (or rotated a
    peer that has none, and took its secret). Refused while its own key has a quota; its
    own key it still rotates (the id, so the quota, stays)."""
    role = _manager_role(node, invoke=True)
    peer = node.create_key("sec-kmq-peer", role)
    manager = node.create_key("sec-kmq", role)
    with node.client() as c:
        r = c.put(f"/v1/quotas/key:{manager['id']}", json={"invocations": 1})
    assert r.status_code == 201, r.text
    assert node.invoke("probe", {}, manager["key"]).status_code == 200
    assert_problem(node.invoke("probe", {}, manager["key"]), 429)
    with node.client(manager["key"], fresh_source()) as c:
        minted = c.post("/v1/keys", json={"name": "sec-kmq-fresh", "role": role})
        rotated = c.post(f"/v1/keys/{peer['id']}/rotate", json={"overlap_s": 0})
        own = c.post(f"/v1/keys/{manager['id']}/rotate", json={"overlap_s": 60})
    assert_problem(minted, 403)
    assert "key" not in minted.json()
    (record,) = audit_records(node, minted.headers["x-request-id"])
    assert record["action"] == "authz.denied"
    assert "daily quota" in record["detail"]["reason"]
    assert_problem(rotated, 403)
    assert "key" not in rotated.json()
    assert own.status_code == 201, own.text
