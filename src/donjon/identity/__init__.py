"""Who is calling and what they may do: API keys, roles, policy."""

from __future__ import annotations

from donjon.identity.apikeys import ApiKey, IdentityError, KeyIndex, hash_key, new_api_key
from donjon.identity.policy import Action, Principal, Role, is_allowed

__all__ = [
    "Action",
    "ApiKey",
    "IdentityError",
    "KeyIndex",
    "Principal",
    "Role",
    "hash_key",
    "is_allowed",
    "new_api_key",
]
