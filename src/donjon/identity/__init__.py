"""Who is calling and what they may do: API keys, roles, policy."""

from __future__ import annotations

from donjon.identity.apikeys import (
    ApiKey,
    IdentityError,
    KeyIndex,
    hash_key,
    new_api_key,
    new_secret,
)
from donjon.identity.policy import Action, Principal, Role
from donjon.identity.policy_doc import RoleDocument, RoleError, parse_role
from donjon.identity.policy_eval import NO_STATEMENT, Decision, Policy, is_allowed

__all__ = [
    "NO_STATEMENT",
    "Action",
    "ApiKey",
    "Decision",
    "IdentityError",
    "KeyIndex",
    "Policy",
    "Principal",
    "Role",
    "RoleDocument",
    "RoleError",
    "hash_key",
    "is_allowed",
    "new_api_key",
    "new_secret",
    "parse_role",
]
