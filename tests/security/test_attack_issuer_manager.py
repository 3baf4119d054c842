"""A custom role granted `issuer:manage` against the roles it does not hold: registering an
issuer (whose keys the attacker holds) that may grant `admin`, then minting itself an admin
token; and removing the issuer the admins' own tokens come from. Each attack against a real
node; the keys are given inline (a JWKS the attacker made)."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pytest

from harness import LiveNode, fresh_source
from jwt_support import SigningKey, claims, jwks
from sec_support import assert_problem, audit_records


def _manager(node: LiveNode, **extra: Any) -> tuple[str, str]:
    """A custom role holding issuer:manage alone, and a key of it."""
    role = f"sec-im-{secrets.token_hex(3)}"
    doc = {
        "name": role,
        "statements": [{"effect": "allow", "actions": ["issuer:manage"], "resources": ["*"]}],
    }
    with node.client() as c:
        assert c.post("/v1/roles", json=doc).status_code == 201
    return role, node.create_key("sec-im", role, **extra)["key"]


def _issuer(name: str, key: SigningKey, roles: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "issuer": f"https://{name}.attacker.example",
        "audience": "donjon",
        "jwks": jwks(key),
        "allowed_roles": roles,
    }


def test_custom_issuer_manager_cannot_register_an_issuer_granting_admin(node: LiveNode) -> None:
    """An issuer that may grant admin, with the manager's own keys, would make it an admin:
    refused (403, audited), and a token of those keys gets nothing."""
    _, manager = _manager(node)
    key = SigningKey.generate("attacker-1", "ES256")
    name = f"sec-evil-{secrets.token_hex(3)}"
    with node.client(manager, fresh_source()) as c:
        r = c.post("/v1/issuers", json=_issuer(name, key, ["admin"]))
    assert_problem(r, 403)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"
    token = key.sign(claims(f"https://{name}.attacker.example", "donjon", roles=["admin"]))
    with node.client(token) as c:
        assert c.get("/v1/keys").status_code == 401


def test_function_limited_issuer_manager_cannot_register_an_issuer_of_its_role(
    node: LiveNode,
) -> None:
    """Tokens carry no function limit: a key limited to one function registering an issuer
    of its own role would hand its tokens every function. Refused."""
    role, manager = _manager(node, functions=["probe"])
    key = SigningKey.generate("attacker-2", "ES256")
    with node.client(manager, fresh_source()) as c:
        r = c.post("/v1/issuers", json=_issuer(f"sec-wide-{secrets.token_hex(3)}", key, [role]))
    assert_problem(r, 403)


@pytest.mark.parametrize(
    ("bounds", "why"),
    [
        ({"expires_in_s": 3600}, "outlive the caller's own key"),
        ({"rate": "1/second"}, "above the caller's own"),
    ],
)
def test_bounded_issuer_manager_cannot_register_an_issuer_its_bounds_do_not_hold(
    node: LiveNode, bounds: dict[str, Any], why: str
) -> None:
    """Registering an issuer mints credentials, as making a key does (key_reach.py): a
    manager key that expires in an hour, or is held to 1 call a second, registering an
    issuer of its own role would hand itself tokens that never stop, under the role's
    limits alone. Refused (403, audited; before: 201), as such a key would be."""
    role, manager = _manager(node, limits=bounds)
    key = SigningKey.generate("attacker-3", "ES256")
    name = f"sec-lasting-{secrets.token_hex(3)}"
    with node.client(manager, fresh_source()) as c:
        r = c.post("/v1/issuers", json=_issuer(name, key, [role]))
    assert_problem(r, 403)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied" and why in record["detail"]["reason"], record
    with node.client() as c:
        assert name not in [i["name"] for i in c.get("/v1/issuers").json()]


def test_custom_issuer_manager_cannot_remove_an_admin_issuer(node: LiveNode) -> None:
    """Removing an issuer that grants roles the manager does not hold (the admins' own
    identity provider) is refused, and the issuer stays."""
    name = f"sec-corp-{secrets.token_hex(3)}"
    with node.client() as c:
        made = c.post("/v1/issuers", json=_issuer(name, SigningKey.generate("corp"), ["admin"]))
    assert made.status_code == 201, made.text
    _, manager = _manager(node)
    with node.client(manager, fresh_source()) as c:
        r = c.delete(f"/v1/issuers/{name}")
    assert_problem(r, 403)
    with node.client() as c:
        assert name in [i["name"] for i in c.get("/v1/issuers").json()]


def test_custom_issuer_manager_manages_issuers_of_its_own_role(node: LiveNode) -> None:
    """What it may do: an issuer granting only its own role, added and removed."""
    role, manager = _manager(node)
    name = f"sec-own-{secrets.token_hex(3)}"
    with node.client(manager, fresh_source()) as c:
        made = c.post(
            "/v1/issuers", json=_issuer(name, SigningKey.generate("own", "ES256"), [role])
        )
        assert made.status_code == 201, made.text
        assert c.delete(f"/v1/issuers/{name}").status_code == 204


def _b64_int(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode()


@pytest.mark.parametrize(("modulus_bits", "exponent_bits"), [(3072, 3071), (16384, 64)])
def test_issuer_manager_cannot_register_a_key_that_makes_forged_tokens_slow(
    node: LiveNode, modulus_bits: int, exponent_bits: int
) -> None:
    """An RSA key with a huge public exponent (or modulus) makes each signature check cost
    milliseconds of the node's event loop instead of microseconds (a 3072-bit exponent:
    ~8 ms, 200 times an RS256 key's): anyone's forged token naming its kid would stall
    every caller. `issuer add` refuses it (400, audited), and nothing is stored."""
    role, manager = _manager(node)
    n = secrets.randbits(modulus_bits) | 1 << (modulus_bits - 1) | 1
    e = secrets.randbits(exponent_bits) | 1 << (exponent_bits - 1) | 1
    jwk = {"kty": "RSA", "kid": "slow", "use": "sig", "n": _b64_int(n), "e": _b64_int(e)}
    name = f"sec-slow-{secrets.token_hex(3)}"
    body = {**_issuer(name, SigningKey.generate("x"), [role]), "jwks": {"keys": [jwk]}}
    with node.client(manager, fresh_source()) as c:
        r = c.post("/v1/issuers", json=body)
        assert_problem(r, 400)
        assert "RSA" in r.json()["detail"], r.json()
        assert name not in [i["name"] for i in c.get("/v1/issuers").json()]
    records = audit_records(node, r.headers["x-request-id"])
    assert [(rec["action"], rec["outcome"]) for rec in records] == [("issuer.add", "refused")]


@pytest.mark.parametrize("host", ["127.0.0.1:1", "localhost:1", "[::1]:1", "169.254.169.254"])
def test_issuer_manager_cannot_make_the_node_fetch_internal_urls(node: LiveNode, host: str) -> None:
    """A JWKS URL on the node's own or an internal network: the fetch's error (refused,
    timed out, TLS, not JSON, a status) would tell the manager what listens there, a port
    scanner of the inside. Only an admin may: 403 (audited), nothing fetched or stored."""
    role, manager = _manager(node)
    name = f"sec-ssrf-{secrets.token_hex(3)}"
    body = _issuer(name, SigningKey.generate("x"), [role])
    del body["jwks"]
    body["jwks_url"] = f"https://{host}/jwks"
    with node.client(manager, fresh_source()) as c:
        r = c.post("/v1/issuers", json=body)
        assert_problem(r, 403)
        assert "refused" not in r.text.lower(), r.text
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"
    with node.client() as c:
        assert name not in [i["name"] for i in c.get("/v1/issuers").json()]
