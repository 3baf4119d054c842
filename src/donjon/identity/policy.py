"""Roles and the policy that maps them to actions. Deny by default."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Action", "Principal", "Role", "is_allowed"]


class Role(StrEnum):
    ADMIN = "admin"
    DEVELOPER = "developer"
    INVOKER = "invoker"


class Action(StrEnum):
    INVOKE = "functions:invoke"
    DEPLOY = "functions:deploy"
    READ = "functions:read"
    DELETE = "functions:delete"
    LOGS = "functions:logs"
    KEYS = "keys:manage"
    AUDIT = "audit:read"
    ISSUERS = "issuers:manage"


_GRANTS: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.DEVELOPER: frozenset(
        {Action.INVOKE, Action.DEPLOY, Action.READ, Action.DELETE, Action.LOGS}
    ),
    Role.INVOKER: frozenset({Action.INVOKE}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    id: str
    name: str
    role: Role
    #: For invokers: the only functions they may call; None means any.
    functions: frozenset[str] | None = None
    #: How it authenticated: "key" (an API key) or "jwt" (id is "<issuer>:<sub>").
    kind: str = "key"

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.id}"


def is_allowed(principal: Principal, action: Action, function: str | None = None) -> bool:
    """May `principal` do `action` (on `function`)? Anything not granted is denied."""
    if action not in _GRANTS.get(principal.role, frozenset()):
        return False
    if principal.functions is not None and action is Action.INVOKE:
        return function is not None and function in principal.functions
    return True
