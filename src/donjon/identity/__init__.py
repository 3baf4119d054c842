"""Who is calling and what they may do: API keys, roles, policy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from donjon.identity.apikeys import (
        ApiKey,
        IdentityError,
        KeyIndex,
        hash_key,
        new_api_key,
        new_secret,
    )
    from donjon.identity.issuers import Issuer, IssuerError, IssuerRegistry, parse_issuer_spec
    from donjon.identity.jwks import (
        JwksError,
        KeySet,
        fetch_jwks,
        parse_jwks,
        refetch_jwks,
        tls_context,
    )
    from donjon.identity.jwt_principal import principal_from_claims
    from donjon.identity.jwt_verifier import JwtVerifier, TokenRejected, looks_like_jwt
    from donjon.identity.policy import Action, Principal, Role
    from donjon.identity.policy_doc import RoleDocument, RoleError, parse_role
    from donjon.identity.policy_eval import NO_STATEMENT, Decision, Policy, is_allowed

__all__ = [
    "NO_STATEMENT",
    "Action",
    "ApiKey",
    "Decision",
    "IdentityError",
    "Issuer",
    "IssuerError",
    "IssuerRegistry",
    "JwksError",
    "JwtVerifier",
    "KeyIndex",
    "KeySet",
    "Policy",
    "Principal",
    "Role",
    "RoleDocument",
    "RoleError",
    "TokenRejected",
    "fetch_jwks",
    "hash_key",
    "is_allowed",
    "looks_like_jwt",
    "new_api_key",
    "new_secret",
    "parse_issuer_spec",
    "parse_jwks",
    "parse_role",
    "principal_from_claims",
    "refetch_jwks",
    "tls_context",
]

# Each name is imported on first use (donjon/lazy_exports.py): `donjon init` and the
# CLI's key and role commands need the keys and the policy, not the JWT verifier and
# PyJWT.
if not TYPE_CHECKING:  # mypy would make every name of a module __getattr__ Any
    __getattr__ = lazy_exports(
        globals(),
        {
            "apikeys": (
                "ApiKey",
                "IdentityError",
                "KeyIndex",
                "hash_key",
                "new_api_key",
                "new_secret",
            ),
            "issuers": ("Issuer", "IssuerError", "IssuerRegistry", "parse_issuer_spec"),
            "jwks": (
                "JwksError",
                "KeySet",
                "fetch_jwks",
                "parse_jwks",
                "refetch_jwks",
                "tls_context",
            ),
            "jwt_principal": ("principal_from_claims",),
            "jwt_verifier": ("JwtVerifier", "TokenRejected", "looks_like_jwt"),
            "policy": ("Action", "Principal", "Role"),
            "policy_doc": ("RoleDocument", "RoleError", "parse_role"),
            "policy_eval": ("NO_STATEMENT", "Decision", "Policy", "is_allowed"),
        },
    )
