"""What `key:manage` reaches outside the built-in admin: keys no wider than the caller's own.

Making a key, or rotating one (which hands back its new secret), is as much as holding
it. So a custom role's `key:manage` reaches only keys of its own role that reach no
function its own key does not (helper-145: a role limited to `probe` minted a key for
every function, and rotated an admin key into its hands), and, against the caller's own
credential, that outlive it by no second and are bounded by no looser limit: a key that
expires tomorrow mints no key that never expires, and a key held to 5 calls a second
mints none held to 500, nor one left to the role's or the server's defaults. Limits are
weighed as the gateway enforces them (the key's own, else its role's, else the server's),
so a key left to the defaults mints no key set above them; a JWT is bounded by its
token's `exp` and its role's or the server's limits (it minted keys that never expired).
A key under a daily quota of its own (`key:<id>`, which binds that key alone) mints no
key and rotates none but itself: a spent quota went on with a fresh key (hE-52).
A secret a rotation retired ends with its overlap (apikeys.py), and so bounds what it
makes: during the overlap it rotated its own key into a fresh secret (every key may
rotate itself), locking out the new secret's holder, or minted a key that never expired.
Revoking is checked on role and functions alone (it ends a key; its bounds give nothing).
Rotating hands back a key that already is someone: outside the built-in admin, a key
rotates only itself. A peer's key of the same role and reach, rotated, made its maker
that peer: the functions it owns (which `*` reaches for no one else), its async results,
its name in the audit. A peer's key may still be revoked, and a new one made.
A JWT holding custom roles beside its built-in one reaches no key: a key holds one role,
and would shed the others' denies (and outlive the token).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.requests import Request

from donjon.gateway.access import forbid
from donjon.gateway.node import Node
from donjon.gateway.rate_buckets import caller_limits
from donjon.identity import Principal
from donjon.ratelimit.rates import CallerLimits
from donjon.store import KeyRecord

__all__ = ["Reach", "check_reach", "looser_than_own", "reaches_key"]


@dataclass(frozen=True)
class Reach:
    """A key as `key:manage` weighs it: its role, functions (None: every one its role
    allows), expiry (None: never) and own limits (unset fields: the defaults')."""

    role: str
    functions: Sequence[str] | None
    expires_at: float | None = None
    limits: CallerLimits = field(default_factory=CallerLimits)
    #: Whether the expiry and limits are weighed too (a new key, a rotation: not a
    #: revocation).
    bounded: bool = False
    #: The id of a key whose new secret the caller gets (a rotation); None: a key not
    #: made yet, or one only revoked.
    key_id: str | None = None

    @classmethod
    def of(cls, record: KeyRecord) -> Reach:
        limits = CallerLimits(record.rate, record.burst, record.concurrency)
        return cls(
            record.role, record.functions, record.expires_at, limits, bounded=True, key_id=record.id
        )


def _within(principal: Principal, reach: Reach) -> bool:
    """Whether `reach`'s role and functions are within `principal`'s own."""
    if reach.role != principal.role or principal.more_roles:
        return False
    return principal.functions is None or (
        reach.functions is not None and set(reach.functions) <= principal.functions
    )


def reaches_key(principal: Principal, record: KeyRecord) -> bool:
    """Whether `principal` may see key `record` in a listing: the built-in admin sees every
    key, any other `key:manage` only the keys it could revoke (its role, within its
    functions): a listing named every tenant's keys, their roles and when they were used."""
    return principal.sole_admin or _within(principal, Reach(record.role, record.functions))


def _bounds(node: Node, principal: Principal) -> tuple[float, int, int]:
    """A principal's limits as the gateway enforces them (its own, else its roles', else the
    server's): calls a second, burst and concurrency."""
    count, period_s, burst, concurrency = caller_limits(node, principal)
    return count / period_s, burst, concurrency


def _looser(node: Node, caller: Principal, expires_at: float | None, reach: Reach) -> str | None:
    """What in `reach` is looser than the caller's own credential, which expires at
    `expires_at` (None: nothing)."""
    if expires_at is not None and (reach.expires_at is None or reach.expires_at > expires_at):
        own = "key" if caller.kind == "key" else "token"
        return f"it would outlive the caller's own {own}"
    minted = Principal(id="", name="", role=reach.role, limits=reach.limits)
    (rate, *counts), (their_rate, *theirs) = _bounds(node, caller), _bounds(node, minted)
    for bound, their, what in zip(counts, theirs, ("burst", "concurrency"), strict=True):
        if their > bound:
            return f"its {what} would be above the caller's own ({bound})"
    if their_rate > rate:
        return f"its rate would be above the caller's own ({rate:g} a second)"
    return None


async def looser_than_own(node: Node, principal: Principal, reach: Reach) -> str | None:
    """`_looser` against the caller's credential: its key's record, or its token (a JWT's
    `exp`; a key's secret that a rotation retired ends with the overlap, apikeys.py)."""
    expires_at = principal.expires_at
    if principal.kind == "key":
        if reach.key_id != principal.id and node.quotas.get(f"key:{principal.id}") is not None:
            # The quota binds this key alone: any other key would be a budget of its own.
            return f"the caller's key has a daily quota (key:{principal.id}) it would not have"
        own = await asyncio.to_thread(node.keys.get, principal.id)
        if own is None:
            return "the caller's key is gone"
        if own.expires_at is not None and (expires_at is None or own.expires_at < expires_at):
            expires_at = own.expires_at
    return _looser(node, principal, expires_at, reach)


def _own_key(principal: Principal) -> str | None:
    """The id of the key `principal` authenticated with (None: a token)."""
    return principal.id if principal.kind == "key" else None


async def check_reach(
    node: Node, request: Request, principal: Principal, request_id: str, verb: str, reach: Reach
) -> None:
    """`Forbidden` (audited `authz.denied`) unless `principal` may `verb` the key `reach`
    describes (the built-in admin may, whatever it is, unless a custom role beside it
    denies it something: Principal.sole_admin)."""
    if principal.sole_admin:
        return
    why = None if _within(principal, reach) else "another role, or more functions"
    if why is None and reach.key_id is not None and reach.key_id != _own_key(principal):
        why = "it is another principal's key (its functions, its results, its name in the audit)"
    if why is None and reach.bounded:
        why = await looser_than_own(node, principal, reach)
    if why is None:
        return
    functions = ", ".join(reach.functions) if reach.functions is not None else "*"
    await forbid(
        node,
        request,
        principal,
        f"key:manage: only an admin may {verb} a key wider than the caller's own "
        f"(role {reach.role}, functions {functions}: {why})",
        request_id,
        {"role": principal.role, "statement": "only admins reach wider keys"},
        f"only an admin may {verb} a key wider than the caller's own key: {why}",
    )
