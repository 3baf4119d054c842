"""Claims to a principal: the one place where a JWT's roles meet Donjon's roles.

The principal is ``jwt:<issuer name>:<sub>``. Its roles are those the roles
claim lists AND the issuer is allowed to grant, built in or custom; any other
is dropped. Of the built-in roles it holds the most powerful one left (as a
key holds one); every custom role left applies beside it, and the policy
decides over all of them: an explicit deny in any wins, then any allow. A
custom role removed since grants nothing (the policy no longer knows it).
"""

from __future__ import annotations

from typing import Any, TypeGuard

from donjon.identity.policy import Principal, Role
from donjon.store.issuers import IssuerRecord

__all__ = ["MAX_SUB", "claimed_roles", "granted_roles", "is_subject", "principal_from_claims"]

#: The longest `sub` a principal is named by (its label, `jwt:<issuer>:<sub>`, is the
#: actor of audit records and the subject of throttles).
MAX_SUB = 256

#: Most powerful first.
_RANK = (Role.ADMIN, Role.DEVELOPER, Role.AUDITOR, Role.INVOKER, Role.METRICS)
_BUILTIN = frozenset(r.value for r in Role)


def is_subject(sub: Any) -> TypeGuard[str]:
    """Whether a token's `sub` may name a principal: 1-MAX_SUB printable characters (no
    control, format or separator character but the space, for the logs and the CLI)."""
    return isinstance(sub, str) and 0 < len(sub) <= MAX_SUB and sub.isprintable()


def claimed_roles(claims: dict[str, Any], claim: str) -> list[str]:
    """The roles a token claims: a list of strings, or one space-separated string."""
    value = claims.get(claim)
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def granted_roles(issuer: IssuerRecord, claims: dict[str, Any]) -> list[str]:
    """The claimed roles this issuer may grant: built-in ones by rank, then custom by name."""
    claimed = set(claimed_roles(claims, issuer.roles_claim)) & set(issuer.allowed_roles)
    builtin: list[str] = [r for r in _RANK if r.value in claimed]
    return builtin + sorted(claimed - _BUILTIN)


def principal_from_claims(
    issuer: IssuerRecord,
    sub: str,
    claims: dict[str, Any],
    kid: str | None = None,
    fingerprint: str | None = None,
) -> Principal | None:
    """The principal a verified token stands for (`kid` and `fingerprint`: its signing
    key's), or None if it is granted no role."""
    roles = granted_roles(issuer, claims)
    if not roles:
        return None
    custom = tuple(r for r in roles if r not in _BUILTIN)
    if roles[0] in _BUILTIN:
        role, more = roles[0], custom
    else:
        role, more = custom[0], custom[1:]
    exp = claims.get("exp")
    return Principal(
        id=f"{issuer.name}:{sub}",
        name=sub,
        role=role,
        kind="jwt",
        more_roles=more,
        expires_at=float(exp) if isinstance(exp, int | float) else None,
        signed_by=kid,
        signed_key=fingerprint,
    )
