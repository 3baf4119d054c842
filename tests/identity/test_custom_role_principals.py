"""JWT principals with custom roles, and the bad input the identity layer refuses clearly."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from typing import Any

import pytest

from donjon.identity import (
    Action,
    Issuer,
    IssuerError,
    IssuerRegistry,
    JwksError,
    JwtVerifier,
    Policy,
    Principal,
    TokenRejected,
    parse_issuer_spec,
    parse_jwks,
    parse_role,
    principal_from_claims,
)
from donjon.store import IssuerRecord
from jwt_support import SigningKey, jwks

ISS = "https://idp.example"


def _record(allowed: tuple[str, ...]) -> IssuerRecord:
    return IssuerRecord(
        name="corp",
        issuer=ISS,
        jwks_url=None,
        jwks="",
        audience="donjon",
        roles_claim="roles",
        allowed_roles=allowed,
        created_at=0.0,
        refreshed_at=0.0,
    )


def _policy() -> Policy:
    return Policy(
        [
            parse_role(
                {
                    "name": "billing",
                    "statements": [
                        {"effect": "allow", "actions": ["function:invoke"], "resources": ["bill-*"]}
                    ],
                }
            ),
            parse_role(
                {
                    "name": "no-admin",
                    "statements": [
                        {"effect": "deny", "actions": ["function:invoke"], "resources": ["*-admin"]}
                    ],
                }
            ),
        ]
    )


def test_token_with_one_custom_role_holds_exactly_it() -> None:
    """A custom role the issuer may grant becomes the principal's role, alone."""
    p = principal_from_claims(_record(("billing",)), "bob", {"roles": ["billing", "admin"]})
    assert p is not None and p.role == "billing" and p.more_roles == ()
    policy = _policy()
    assert policy.decide(p, Action.INVOKE, "bill-run").allowed
    assert not policy.decide(p, Action.INVOKE, "payroll").allowed
    assert not policy.decide(p, Action.AUDIT).allowed


def test_builtin_role_comes_first_and_custom_roles_apply_beside_it() -> None:
    """invoker + no-admin: the built-in role is primary, the custom role's deny still wins."""
    record = _record(("invoker", "no-admin", "billing"))
    p = principal_from_claims(record, "bob", {"roles": "no-admin invoker billing"})
    assert p is not None and p.role == "invoker" and p.more_roles == ("billing", "no-admin")
    policy = _policy()
    assert policy.decide(p, Action.INVOKE, "report").allowed
    denied = policy.decide(p, Action.INVOKE, "bill-admin")
    assert not denied.allowed and denied.statement == "no-admin#0"


def test_removed_custom_role_grants_nothing() -> None:
    """A role the policy no longer knows is skipped; with none left, everything is denied."""
    policy = _policy()
    policy.remove("billing")
    alone = Principal("corp:bob", "bob", "billing", kind="jwt")
    decision = policy.decide(alone, Action.INVOKE, "bill-run")
    assert not decision.allowed and "does not exist" in decision.statement
    beside = Principal("corp:bob", "bob", "invoker", kind="jwt", more_roles=("billing",))
    assert policy.decide(beside, Action.INVOKE, "bill-run").allowed  # invoker's own allow


def _spec(**fields: Any) -> dict[str, Any]:
    return {
        "name": "corp",
        "issuer": ISS,
        "audience": "donjon",
        "jwks_url": "https://x/j",
        **fields,
    }


def test_issuer_may_name_custom_roles_that_exist() -> None:
    """allowed_roles takes custom roles the policy knows, and refuses any other name."""
    policy = _policy()
    spec = parse_issuer_spec(_spec(allowed_roles=["billing", "invoker"]), policy.exists)
    assert spec.allowed_roles == ("billing", "invoker")
    with pytest.raises(IssuerError, match="names no role 'payroll'"):
        parse_issuer_spec(_spec(allowed_roles=["payroll"]), policy.exists)
    with pytest.raises(IssuerError, match="names no role 'billing'"):
        parse_issuer_spec(_spec(allowed_roles=["billing"]))  # no policy: built-in roles only


@pytest.mark.parametrize(
    "url", ["https://[::zz]/jwks", "https://a b/jwks", "https://user:pw@idp/jwks", "https:///j"]
)
def test_bad_jwks_urls_are_refused_with_a_hint(url: str) -> None:
    """URLs that cannot be fetched are refused at `issuer add`, never a 500 later."""
    with pytest.raises(IssuerError) as e:
        parse_issuer_spec(_spec(jwks_url=url))
    assert e.value.hint


def test_deeply_nested_jwks_is_a_jwks_error() -> None:
    """A fetched JWKS of nested brackets is refused before json's recursion."""
    with pytest.raises(JwksError, match="nested deeper"):
        parse_jwks(b"[" * 50_000 + b"]" * 50_000)
    with pytest.raises(JwksError) as e:
        parse_jwks(b"{")
    assert e.value.hint  # every JWKS error says what a JWKS is


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("part", ["header", "payload"])
def test_deeply_nested_token_segments_are_rejected(part: str) -> None:
    """A token whose header or payload nests brackets thousands deep is rejected, not a crash."""
    key = SigningKey.generate("k1", "EdDSA")
    registry = IssuerRegistry()
    registry.add(Issuer(_record(("invoker",)), parse_jwks(json.dumps(jwks(key)))))
    verifier = JwtVerifier(registry, ssl.create_default_context())
    deep, header = _b64(b"[" * 3000), _b64(b'{"kid": "k1"}')
    token = f"{deep}.{_b64(b'{}')}." if part == "header" else f"{header}.{deep}."
    with pytest.raises(TokenRejected, match=f"the {part} is nested too deep"):
        asyncio.run(verifier.verify(token))
