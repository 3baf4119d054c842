"""A token granted the built-in admin and, beside it, a custom role that denies it some
actions: each way of shedding that deny, by a key, by rewriting the denying role, or by
an issuer of its own whose tokens grant admin alone, against a real node.

A key holds one role, so a key minted by a token with roles beside its built-in one
would not carry their denies; the same holds of the admin's built-in role.
"""

from __future__ import annotations

import secrets

from harness import LiveNode, fresh_source
from jwt_support import SigningKey, claims, jwks
from sec_support import assert_problem, audit_records

_NO_DELETE = {"effect": "deny", "actions": ["function:delete"], "resources": ["*"]}


def _denied_admin(node: LiveNode) -> tuple[str, str]:
    """(a token holding admin and a role denying function:delete on `*`, that role)."""
    tag = secrets.token_hex(3)
    role = f"sec-no-delete-{tag}"
    key = SigningKey.generate(f"da-{tag}", "ES256")
    iss = f"https://da-{tag}.example"
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": role, "statements": [_NO_DELETE]})
        assert r.status_code == 201, r.text
        issuer = {
            "name": f"sec-da-{tag}",
            "issuer": iss,
            "audience": "donjon",
            "jwks": jwks(key),
            "allowed_roles": ["admin", role],
        }
        assert c.post("/v1/issuers", json=issuer).status_code == 201
    return key.sign(claims(iss, "donjon", roles=["admin", role])), role


def test_an_admin_token_with_a_deny_mints_no_admin_key_without_it(node: LiveNode) -> None:
    """The token may not delete functions; an admin key it minted could (and never
    expire): refused, audited `authz.denied`."""
    token, _ = _denied_admin(node)
    with node.client(token, fresh_source()) as c:
        assert_problem(c.delete("/v1/functions/sec-reply"), 403)
    with node.client(token, fresh_source()) as c:
        r = c.post("/v1/keys", json={"name": "sec-shed", "role": "admin"})
    assert_problem(r, 403)
    assert "key" not in r.json()
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"


def test_an_admin_token_with_a_deny_cannot_rewrite_the_denying_role(node: LiveNode) -> None:
    """Rewriting (or removing) the role that denies it would shed the deny: refused."""
    token, role = _denied_admin(node)
    allow = {"effect": "allow", "actions": ["audit:read"], "resources": ["*"]}
    with node.client(token, fresh_source()) as c:
        assert_problem(c.post("/v1/roles", json={"name": role, "statements": [allow]}), 403)
    with node.client(token, fresh_source()) as c:
        assert_problem(c.delete(f"/v1/roles/{role}"), 403)
    with node.client() as c:
        (doc,) = [r for r in c.get("/v1/roles").json() if r["name"] == role]
    assert doc["statements"] == [_NO_DELETE]


def test_an_admin_token_with_a_deny_adds_no_issuer_granting_admin_alone(
    node: LiveNode,
) -> None:
    """An issuer of its own (its JWKS inline) granting admin alone would sign tokens
    without the deny: refused."""
    token, _ = _denied_admin(node)
    tag = secrets.token_hex(3)
    own = SigningKey.generate(f"own-{tag}", "ES256")
    issuer = {
        "name": f"sec-own-{tag}",
        "issuer": f"https://own-{tag}.example",
        "audience": "donjon",
        "jwks": jwks(own),
        "allowed_roles": ["admin"],
    }
    with node.client(token, fresh_source()) as c:
        assert_problem(c.post("/v1/issuers", json=issuer), 403)
