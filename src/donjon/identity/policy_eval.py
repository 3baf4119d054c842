"""Deciding a request: the roles compiled in memory, deny by default, an explicit deny wins.

A statement matches a request when it names the action and one of its
resource patterns matches the function. Resource patterns are function names
with `*` at the start and/or end. Requests without a function (listing,
keys, audit, ...) are matched by an allow statement that names the action on
any resource, and by a deny statement only through a `*` pattern.

Function owners: for the owner-scoped actions (deploy a new version, read,
delete, logs) the bare pattern `*` reaches only the functions the principal
owns (and, for deploy, names no one owns yet). A function owned by someone else
is reached only through a pattern that names it (`billing-*`, `report`), or by
the built-in admin role.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from donjon.identity.policy import (
    BUILTIN_ROLES,
    FUNCTION_LIMITED,
    OWNER_SCOPED,
    Action,
    Principal,
    Role,
)
from donjon.identity.policy_doc import RoleDocument, parse_role
from donjon.ratelimit.rates import NO_LIMITS, CallerLimits

__all__ = ["NO_STATEMENT", "Decision", "Policy", "is_allowed"]

NO_STATEMENT = "no statement allows"
#: An owner no principal is (no label holds a NUL): a function "owned by someone else".
_NOT_AN_OWNER = "\x00"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    #: "role#index" of the deciding statement, or NO_STATEMENT (or why a key is limited).
    statement: str


@dataclass(frozen=True, slots=True)
class _Compiled:
    index: int
    allow: bool
    actions: frozenset[str]
    exact: frozenset[str]
    prefixes: tuple[str, ...]
    suffixes: tuple[str, ...]
    infixes: tuple[str, ...]
    star: bool

    def matches(self, function: str, *, explicit: bool) -> bool:
        """Whether a pattern matches `function` (with `explicit`, `*` alone does not)."""
        if self.star and not explicit:
            return True
        return (
            function in self.exact
            or any(function.startswith(p) for p in self.prefixes)
            or any(function.endswith(s) for s in self.suffixes)
            or any(i in function for i in self.infixes)
        )


def _compile(index: int, effect: str, actions: Iterable[str], resources: list[str]) -> _Compiled:
    exact, prefixes, suffixes, infixes, star = set(), [], [], [], False
    for r in resources:
        if r == "*":
            star = True
        elif r.startswith("*") and r.endswith("*"):
            infixes.append(r[1:-1])
        elif r.endswith("*"):
            prefixes.append(r[:-1])
        elif r.startswith("*"):
            suffixes.append(r[1:])
        else:
            exact.add(r)
    return _Compiled(
        index,
        effect == "allow",
        frozenset(str(a) for a in actions),
        frozenset(exact),
        tuple(prefixes),
        tuple(suffixes),
        tuple(infixes),
        star,
    )


def _compile_doc(doc: RoleDocument) -> tuple[_Compiled, ...]:
    return tuple(
        _compile(i, s.effect, s.actions, s.resources) for i, s in enumerate(doc.statements)
    )


_BUILTINS = {
    name: _compile_doc(parse_role({"name": name, "statements": st}, allow_builtin=True))
    for name, st in BUILTIN_ROLES.items()
}


class Policy:
    """Every role a node knows, compiled: each decision is an in-memory lookup."""

    def __init__(self, custom: Iterable[RoleDocument] = ()) -> None:
        self._roles: dict[str, tuple[_Compiled, ...]] = dict(_BUILTINS)
        self._docs: dict[str, RoleDocument] = {}
        #: The limits each custom role sets (only roles that set some).
        self._limits: dict[str, CallerLimits] = {}
        #: Bumped by every change (`put`, `remove`): what was decided under an older
        #: generation is stale (gateway/call_plan.py keeps decisions by it).
        self.generation = 0
        for doc in custom:
            self.put(doc)

    def put(self, doc: RoleDocument) -> None:
        if doc.name in set(Role):
            raise ValueError(f"{doc.name} is built in")
        self.generation += 1
        self._roles[doc.name] = _compile_doc(doc)
        self._docs[doc.name] = doc
        if doc.limits is not None and doc.limits.caller_limits():
            self._limits[doc.name] = doc.limits.caller_limits()
        else:
            self._limits.pop(doc.name, None)

    @property
    def sets_limits(self) -> bool:
        """Whether any role sets limits (if none, a caller's are its key's or the defaults)."""
        return bool(self._limits)

    def limits_of(self, role: str) -> CallerLimits:
        """The limits role `role` sets (NO_LIMITS: none, or no such role). A dict lookup."""
        return self._limits.get(role, NO_LIMITS)

    def remove(self, name: str) -> None:
        if name not in set(Role):
            self.generation += 1
            self._roles.pop(name, None)
            self._docs.pop(name, None)
            self._limits.pop(name, None)

    def exists(self, name: str) -> bool:
        return name in self._roles

    def custom(self) -> list[RoleDocument]:
        return [self._docs[n] for n in sorted(self._docs)]

    def decide(
        self,
        principal: Principal,
        action: Action,
        function: str | None = None,
        owner: str | None = None,
    ) -> Decision:
        """May `principal` do `action` (on `function`, owned by `owner`: None if no one)?"""
        if (
            function is not None
            and principal.functions is not None
            and action in FUNCTION_LIMITED
            and function not in principal.functions
        ):
            return Decision(False, "the key is limited to other functions")
        roles = (principal.role, *principal.more_roles)
        known = [(r, self._roles[r]) for r in roles if r in self._roles]
        if not known:
            return Decision(False, f"role {principal.role!r} does not exist")
        name = action.value
        # Owned by someone else: `*` alone no longer reaches it (built-in admin excepted).
        explicit = (
            action in OWNER_SCOPED
            and function is not None
            and owner != principal.label
            and (owner is not None or action is not Action.DEPLOY)
            and principal.role != Role.ADMIN
        )
        # Several roles (a JWT's): an explicit deny in any of them wins, then any allow.
        allowed_by: str | None = None
        for role, statements in known:
            for s in statements:
                if name not in s.actions:
                    continue
                if function is None:
                    hit = s.star if not s.allow else True
                else:
                    hit = s.matches(function, explicit=explicit and s.allow)
                if not hit:
                    continue
                if not s.allow:
                    return Decision(False, f"{role}#{s.index}")
                if allowed_by is None:
                    allowed_by = f"{role}#{s.index}"
        if allowed_by is None:
            if explicit and owner is not None:
                return Decision(False, f"{NO_STATEMENT} (the function is owned by {owner})")
            return Decision(False, NO_STATEMENT)
        return Decision(True, allowed_by)

    def reaches_every(self, principal: Principal, action: Action) -> bool:
        """Whether `principal` may do `action` on every function at once (a request that
        spans them all, such as purging the whole dead-letter queue): an allow on `*`
        alone, no deny of the action, and no key limit to some functions."""
        if principal.functions is not None and action in FUNCTION_LIMITED:
            return False
        known = [
            self._roles[r] for r in (principal.role, *principal.more_roles) if r in self._roles
        ]
        statements = [s for role in known for s in role if action.value in s.actions]
        if any(not s.allow for s in statements):
            return False
        return any(s.allow and s.star for s in statements)

    def reaches_whoever_owns(self, principal: Principal, action: Action, function: str) -> bool:
        """Whether `principal` may do `action` on `function` whoever owns it: a statement
        names the function (a pattern other than `*` alone), or the built-in admin."""
        return self.decide(principal, action, function, _NOT_AN_OWNER).allowed

    def reaches_own(self, principal: Principal, action: Action, function: str) -> bool:
        """Whether `principal` may do `action` on `function` if it owns it (`*` included)."""
        return self.decide(principal, action, function, principal.label).allowed


_BUILTIN_POLICY = Policy()


def is_allowed(
    principal: Principal, action: Action, function: str | None = None, owner: str | None = None
) -> bool:
    """The built-in roles' decision (a node decides with its own `Policy`, custom roles too)."""
    return _BUILTIN_POLICY.decide(principal, action, function, owner).allowed
