"""Claims to a principal: the one place where a JWT's roles meet Donjon's roles.

The principal is ``jwt:<issuer name>:<sub>``. Its roles are those the roles
claim lists AND the issuer is allowed to grant (built-in roles only, for now);
any other is dropped. A principal holds one role: the most powerful one left.
"""

from __future__ import annotations

from typing import Any

from donjon.identity.policy import Principal, Role
from donjon.store.issuers import IssuerRecord

__all__ = ["claimed_roles", "granted_roles", "principal_from_claims"]

#: Most powerful first.
_RANK = (Role.ADMIN, Role.DEVELOPER, Role.AUDITOR, Role.INVOKER)


def claimed_roles(claims: dict[str, Any], claim: str) -> list[str]:
    """The roles a token claims: a list of strings, or one space-separated string."""
    value = claims.get(claim)
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def granted_roles(issuer: IssuerRecord, claims: dict[str, Any]) -> list[Role]:
    """The claimed roles this issuer may grant (the rest are dropped)."""
    claimed = set(claimed_roles(claims, issuer.roles_claim))
    return [r for r in _RANK if r.value in claimed and r.value in issuer.allowed_roles]


def principal_from_claims(
    issuer: IssuerRecord, sub: str, claims: dict[str, Any]
) -> Principal | None:
    """The principal a verified token stands for, or None if it is granted no role."""
    roles = granted_roles(issuer, claims)
    if not roles:
        return None
    return Principal(id=f"{issuer.name}:{sub}", name=sub, role=roles[0], kind="jwt")
