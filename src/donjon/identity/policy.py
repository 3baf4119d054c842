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
    #: The vault: set, rotate and remove secrets (values go in, never out).
    SECRET_WRITE = "secret:write"  # noqa: S105  # nosec B105 - an action name
    #: The vault: list secrets (names, versions, dates, grants; never values).
    SECRET_LIST = "secret:list"  # noqa: S105  # nosec B105 - an action name
    #: Re-wrap every data key under a new key-encryption key (admins only).
    VAULT_REKEY = "vault:rekey"


_GRANTS: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.DEVELOPER: frozenset(
        {
            Action.INVOKE,
            Action.DEPLOY,
            Action.READ,
            Action.DELETE,
            Action.LOGS,
            Action.SECRET_WRITE,
            Action.SECRET_LIST,
        }
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

    @property
    def label(self) -> str:
        return f"key:{self.id}"


def is_allowed(principal: Principal, action: Action, function: str | None = None) -> bool:
    """May `principal` do `action` (on `function`)? Anything not granted is denied."""
    if action not in _GRANTS.get(principal.role, frozenset()):
        return False
    if principal.functions is not None and action is Action.INVOKE:
        return function is not None and function in principal.functions
    return True
