"""Custom roles beyond keys: JWT principals granted custom roles, and the API description.

An issuer's allowed roles may name custom roles; a token claiming one gets
exactly that role's statements (beside the built-in role it may also hold, an
explicit deny in either wins); removing the role leaves such tokens with no
rights (403, audited), never an error. `GET /openapi.json` is decided by the
policy too (`api:read`, held by every built-in role).
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from harness import LiveNode, fresh_source
from jwt_support import SigningKey, claims, jwks
from sec_support import assert_problem, audit_records

AUD = "donjon-roles"


def _apply(node: LiveNode, name: str, *statements: dict[str, Any]) -> None:
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": name, "statements": list(statements)})
    assert r.status_code == 201, r.text


def _allow(action: str, *resources: str) -> dict[str, Any]:
    return {"effect": "allow", "actions": [action], "resources": list(resources)}


def _deny(action: str, *resources: str) -> dict[str, Any]:
    return {"effect": "deny", "actions": [action], "resources": list(resources)}


class _Issuer:
    """An issuer registered on the node (JWKS given inline) that may grant `roles`."""

    def __init__(self, node: LiveNode, roles: list[str]) -> None:
        tag = secrets.token_hex(3)
        self.name, self.iss = f"sec-roles-{tag}", f"https://roles-{tag}.example"
        self.key = SigningKey.generate(f"k-{tag}", "EdDSA")
        with node.client() as c:
            r = c.post(
                "/v1/issuers",
                json={
                    "name": self.name,
                    "issuer": self.iss,
                    "audience": AUD,
                    "jwks": jwks(self.key),
                    "allowed_roles": roles,
                },
            )
        assert r.status_code == 201, r.text

    def token(self, *roles: str, sub: str = "carol") -> str:
        return self.key.sign(claims(self.iss, AUD, sub=sub, roles=list(roles)))


def _invoke(node: LiveNode, name: str, token: str) -> httpx.Response:
    return node.invoke(name, {"op": "echo"}, key=token, source=fresh_source())


def test_jwt_with_a_custom_role_gets_exactly_its_statements(node: LiveNode) -> None:
    """A token granted `probe-only` invokes probe and nothing else; no admin route either."""
    role = f"sec-probe-only-{secrets.token_hex(3)}"
    _apply(node, role, _allow("function:invoke", "probe"))
    issuer = _Issuer(node, [role])
    token = issuer.token(role)
    r = _invoke(node, "probe", token)
    assert r.status_code == 200, r.text
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["actor"] == f"jwt:{issuer.name}:carol"
    r = _invoke(node, "probe-warm", token)
    assert_problem(r, 403)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["detail"]["statement"] == "no statement allows"
    assert record["detail"]["role"] == role
    with node.client(token, fresh_source()) as c:
        assert_problem(c.get("/v1/audit"), 403)
        assert_problem(c.get("/v1/functions"), 403)


def test_custom_role_deny_wins_over_a_builtin_role_beside_it(node: LiveNode) -> None:
    """invoker plus a role denying probe: probe is refused by that deny, others still run."""
    role = f"sec-no-probe-{secrets.token_hex(3)}"
    _apply(node, role, _deny("function:invoke", "probe"))
    issuer = _Issuer(node, ["invoker", role])
    token = issuer.token("invoker", role)
    assert _invoke(node, "probe-warm", token).status_code == 200
    r = _invoke(node, "probe", token)
    assert_problem(r, 403)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["detail"]["statement"] == f"{role}#0"
    assert record["detail"]["role"] == f"invoker,{role}"
    # The deny applies only when the token claims that role.
    assert _invoke(node, "probe", issuer.token("invoker")).status_code == 200


def test_custom_role_the_issuer_may_not_grant_is_dropped(node: LiveNode) -> None:
    """A token claiming a custom role its issuer may not grant gets no rights from it (403)."""
    role = f"sec-ungranted-{secrets.token_hex(3)}"
    _apply(node, role, _allow("function:invoke", "*"))
    issuer = _Issuer(node, ["auditor"])
    r = _invoke(node, "probe", issuer.token(role))
    assert_problem(r, 403)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"
    assert "no role that issuer" in record["detail"]["reason"]


def test_removed_custom_role_leaves_tokens_without_rights(node: LiveNode) -> None:
    """After `role rm`, a token that invoked with that role gets 403 (audited), not a 500."""
    role = f"sec-gone-{secrets.token_hex(3)}"
    _apply(node, role, _allow("function:invoke", "probe"))
    issuer = _Issuer(node, [role])
    token = issuer.token(role)
    assert _invoke(node, "probe", token).status_code == 200
    with node.client() as c:
        assert c.delete(f"/v1/roles/{role}").status_code == 200
    r = _invoke(node, "probe", token)
    assert_problem(r, 403)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"
    assert record["detail"]["statement"] == f"role {role!r} does not exist"


def test_openapi_is_decided_by_the_policy(node: LiveNode) -> None:
    """Every built-in role reads /openapi.json; a custom role without api:read gets 403."""
    for role in ("invoker", "developer", "auditor"):
        key = node.create_key(f"sec-api-{role}", role)["key"]
        with node.client(key) as c:
            r = c.get("/openapi.json")
        assert r.status_code == 200 and r.json()["openapi"].startswith("3."), (role, r.text)
    bare = f"sec-no-api-{secrets.token_hex(3)}"
    _apply(node, bare, _allow("function:invoke", "probe"))
    with node.client(node.create_key("sec-bare", bare)["key"], fresh_source()) as c:
        r = c.get("/openapi.json")
    assert_problem(r, 403)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["detail"]["permission"] == "api:read"
    reader = f"sec-api-reader-{secrets.token_hex(3)}"
    _apply(node, reader, _allow("api:read", "*"))
    with node.client(node.create_key("sec-reader", reader)["key"]) as c:
        assert c.get("/openapi.json").status_code == 200
