"""Role documents: the shape `donjon role apply FILE` takes, validated before anything is stored.

name: billing-invoker
statements:
  - {effect: allow, actions: ["function:invoke"], resources: ["billing-*"]}
  - {effect: deny, actions: ["function:invoke"], resources: ["billing-admin"]}
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator

from donjon.errors import Error
from donjon.identity.policy import Action, Role
from donjon.ratelimit.rates import MAX_BURST, MAX_CONCURRENCY, CallerLimits

__all__ = [
    "RoleConflict",
    "RoleDocument",
    "RoleError",
    "RoleLimits",
    "Statement",
    "parse_role",
]

ROLE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
#: A function name with an optional `*` before and/or after it, or `*` alone.
_RESOURCE_RE = re.compile(r"^(\*|\*?[a-z0-9-]{1,63}\*?)$")
_ACTIONS = frozenset(a.value for a in Action)


class RoleError(Error):
    """A role document that is not valid, or a role that cannot be changed."""

    title = "Bad request"


class RoleConflict(RoleError):
    """A change the current state forbids: removing a role keys still hold."""

    title = "Conflict"


class Statement(BaseModel):
    """One rule: allow or deny these actions on these functions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    effect: Literal["allow", "deny"]
    # The validators below give the messages; the JSON Schema (/openapi.json) says the same.
    actions: list[Annotated[str, WithJsonSchema({"type": "string", "enum": sorted(_ACTIONS)})]] = (
        Field(min_length=1, max_length=64)
    )
    resources: list[
        Annotated[str, WithJsonSchema({"type": "string", "pattern": _RESOURCE_RE.pattern})]
    ] = Field(min_length=1, max_length=256)

    @field_validator("actions")
    @classmethod
    def _known_actions(cls, actions: list[str]) -> list[str]:
        unknown = [a for a in actions if a not in _ACTIONS]
        if unknown:
            raise ValueError(
                f"unknown action {unknown[0]!r}; the actions are: {', '.join(sorted(_ACTIONS))}"
            )
        return actions

    @field_validator("resources")
    @classmethod
    def _patterns(cls, resources: list[str]) -> list[str]:
        for r in resources:
            if not _RESOURCE_RE.fullmatch(r):  # (`$` alone takes a final newline)
                raise ValueError(
                    f"bad resource pattern {r[:80]!r}: a function name with an optional "
                    "'*' at its start and/or end, or '*' alone"
                )
        return resources


class RoleLimits(BaseModel):
    """What the role's keys (and JWT principals) get when they set no limit of their own
    (docs/limits.md): a token bucket (`rate`, `burst`) and calls in flight at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: str | None = Field(
        None, pattern=r"^[1-9][0-9]{0,8}/(second|minute|hour|day)$", examples=["50/second"]
    )
    # strict: a whole number, not `true` (taken as 1), "8" or 8.0, as a key's own limits.
    burst: int | None = Field(None, ge=1, le=MAX_BURST, strict=True)
    concurrency: int | None = Field(None, ge=1, le=MAX_CONCURRENCY, strict=True)

    def caller_limits(self) -> CallerLimits:
        return CallerLimits(self.rate, self.burst, self.concurrency)


class RoleDocument(BaseModel):
    """A named list of statements. Deny by default; an explicit deny wins."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "billing-invoker",
                    "statements": [
                        {
                            "effect": "allow",
                            "actions": ["function:invoke"],
                            "resources": ["billing-*"],
                        }
                    ],
                }
            ]
        },
    )

    name: Annotated[
        str,
        WithJsonSchema(
            {
                "type": "string",
                "pattern": ROLE_NAME_RE.pattern,
                "not": {"enum": [r.value for r in Role]},
                "examples": ["billing-invoker"],
            }
        ),
    ]
    statements: list[Statement] = Field(min_length=1, max_length=256)
    #: Optional limits for the role's principals (issue 15); omitted: the server's defaults.
    limits: RoleLimits | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not ROLE_NAME_RE.fullmatch(name):
            raise ValueError("a role name is 1-63 of a-z, 0-9 and '-', starting with a letter")
        return name


def parse_role(data: Any, *, allow_builtin: bool = False) -> RoleDocument:
    """`data` as a role document, or `RoleError` saying every problem found."""
    try:
        doc = RoleDocument.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(document)"
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "too_short" and err["loc"][-1:] == ("statements",):
                message = "a role needs at least one statement"
            problems.append(f"{where}: {message}")
        raise RoleError(
            "invalid role document: " + "; ".join(problems[:10]),
            hint="see `The policy model` in docs/security.md for the document shape",
        ) from None
    if not allow_builtin and doc.name in set(Role):
        raise RoleError(
            f"{doc.name!r} is a built-in role: it cannot be overwritten",
            hint="choose another name for a custom role",
        )
    return doc
