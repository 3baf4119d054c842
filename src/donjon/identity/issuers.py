"""Trusted JWT issuers: what an admin may register, and the live set the gateway checks.

An issuer is a name (``corp``), the ``iss`` its tokens carry, where its keys
come from (an https:// JWKS URL, or a JWKS given once), the audience its
tokens must name, the claim that lists roles, and the roles it may grant.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from donjon.errors import Error
from donjon.identity.jwks import KeySet, parse_jwks
from donjon.identity.policy import Role
from donjon.store.issuers import IssuerRecord

__all__ = [
    "DEFAULT_ALLOWED_ROLES",
    "DEFAULT_ROLES_CLAIM",
    "Issuer",
    "IssuerError",
    "IssuerRegistry",
    "IssuerRequest",
    "IssuerSpec",
    "parse_issuer_spec",
]

log = logging.getLogger("donjon")

ISSUER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_CLAIM_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
DEFAULT_ROLES_CLAIM = "roles"
#: Least privilege: an issuer registered without --allowed-roles grants invoker only.
DEFAULT_ALLOWED_ROLES: tuple[str, ...] = (Role.INVOKER.value,)
#: Roles one issuer may grant, at most.
MAX_ALLOWED_ROLES = 64


class IssuerError(Error):
    """A request to register an issuer that cannot be honoured as given."""

    title = "Bad issuer"


@dataclass(frozen=True)
class IssuerSpec:
    """A validated `issuer add` request (keys not yet read)."""

    name: str
    issuer: str
    jwks_url: str | None
    jwks: str | None
    audience: str
    roles_claim: str
    allowed_roles: tuple[str, ...]


class IssuerRequest(BaseModel):
    """The body of `POST /v1/issuers` as /openapi.json describes it.

    `parse_issuer_spec` checks a body field by field (custom role names need the
    policy, URLs a closer look), with a message and hint for each problem."""

    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "corp",
                    "issuer": "https://login.example.com/",
                    "audience": "donjon",
                    "jwks_url": "https://login.example.com/.well-known/jwks.json",
                    "allowed_roles": ["invoker"],
                }
            ]
        },
    )

    name: str = Field(pattern=ISSUER_NAME.pattern)
    issuer: str = Field(min_length=1, max_length=512, description="the `iss` its tokens carry")
    audience: str = Field(min_length=1, max_length=256, description="the `aud` tokens must name")
    jwks_url: str | None = Field(
        None, max_length=2048, pattern=r"^https://", description="where its keys are (https)"
    )
    jwks: dict[str, Any] | None = Field(None, description="or the JWKS itself, given once")
    roles_claim: str = Field(DEFAULT_ROLES_CLAIM, pattern=_CLAIM_NAME.pattern)
    allowed_roles: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_ROLES),
        min_length=1,
        max_length=MAX_ALLOWED_ROLES,
        description="built-in or custom role names its tokens may claim",
    )

    @field_validator("issuer", "audience")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a non-empty string")
        if not value.isprintable():
            raise ValueError("must not hold control characters")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> IssuerRequest:
        if (self.jwks_url is None) == (self.jwks is None):
            raise ValueError("give exactly one of jwks_url and jwks")
        return self


_USAGE = (
    'the body is {"name", "issuer", "audience", and "jwks_url" (https://) or '
    '"jwks" (a JWKS object), optional "roles_claim" and "allowed_roles"}'
)


def _text(body: dict[str, Any], key: str, most: int) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > most:
        raise IssuerError(
            f"{key} must be a non-empty string of at most {most} characters", hint=_USAGE
        )
    if not value.isprintable():
        raise IssuerError(f"{key} must not hold control characters", hint=_USAGE)
    return value


def _allowed_roles(allowed: Any, role_exists: Callable[[str], bool] | None) -> list[str]:
    """A non-empty list of role names that exist (built in, or custom per `role_exists`)."""
    builtin = [r.value for r in Role]
    hint = f"name built-in roles ({', '.join(builtin)}) or custom ones (`donjon role ls`)"
    if (
        not isinstance(allowed, list)
        or not allowed
        or len(allowed) > MAX_ALLOWED_ROLES
        or not all(isinstance(r, str) for r in allowed)
    ):
        raise IssuerError(
            f"allowed_roles must be a non-empty list of at most {MAX_ALLOWED_ROLES} role names",
            hint=hint,
        )
    for name in allowed:
        if name not in builtin and (role_exists is None or not role_exists(name)):
            raise IssuerError(f"allowed_roles names no role {name[:64]!r}", hint=hint)
    return allowed


def _jwks_url(url: str) -> str:
    """An https:// URL with a host, no credentials and no whitespace, or `IssuerError`."""
    hint = "give the https:// URL of the issuer's JWKS, or the JWKS itself (a file)"
    if not url.startswith("https://"):
        raise IssuerError("jwks_url must be an https:// URL", hint=hint)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as e:
        raise IssuerError(f"jwks_url is not a valid URL: {e}", hint=hint) from None
    if not parsed.host or parsed.userinfo or any(c.isspace() for c in url):
        raise IssuerError(
            "jwks_url must name a host, and hold no credentials or whitespace", hint=hint
        )
    return url


def parse_issuer_spec(body: Any, role_exists: Callable[[str], bool] | None = None) -> IssuerSpec:
    """Check an `issuer add` request; `IssuerError` says what is wrong with it.

    `allowed_roles` may name built-in roles and, with `role_exists`, the custom
    roles it knows (the node's policy); any other name is refused.
    """
    usage = _USAGE
    if not isinstance(body, dict):
        raise IssuerError("the body must be a JSON object", hint=usage)
    unknown = set(body) - {
        "name", "issuer", "jwks_url", "jwks", "audience", "roles_claim", "allowed_roles"
    }  # fmt: skip
    if unknown:
        # Each cut, as a key's are (keys_api.py): a field name may be the whole body long.
        named = ", ".join(sorted(str(f)[:64] for f in unknown))
        raise IssuerError(f"unknown fields: {named}", hint=usage)
    name = body.get("name")
    if not isinstance(name, str) or not ISSUER_NAME.fullmatch(name):
        raise IssuerError("name must match [a-z][a-z0-9-]{0,62}", hint=usage)
    if ("jwks_url" in body) == ("jwks" in body):
        raise IssuerError("give exactly one of jwks_url and jwks", hint=usage)
    jwks_url: str | None = None
    jwks: str | None = None
    if "jwks_url" in body:
        jwks_url = _jwks_url(_text(body, "jwks_url", 2048))
    else:
        if not isinstance(body["jwks"], dict):
            raise IssuerError('jwks must be a JWKS object {"keys": [...]}', hint=usage)
        jwks = json.dumps(body["jwks"])
    roles_claim = body.get("roles_claim", DEFAULT_ROLES_CLAIM)
    if not isinstance(roles_claim, str) or not _CLAIM_NAME.fullmatch(roles_claim):
        raise IssuerError("roles_claim must be a claim name ([A-Za-z0-9_.:/-], 1-128)", hint=usage)
    allowed = _allowed_roles(body.get("allowed_roles", list(DEFAULT_ALLOWED_ROLES)), role_exists)
    _text(body, "issuer", 512)
    _text(body, "audience", 256)
    # The model /openapi.json shows checks it too, so the two cannot drift apart.
    try:
        request = IssuerRequest.model_validate(body)
    except ValidationError as e:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}"
            for err in e.errors(include_url=False)
        ]
        raise IssuerError("; ".join(problems[:10]), hint=usage) from None
    return IssuerSpec(
        name=request.name,
        issuer=request.issuer,
        jwks_url=jwks_url,
        jwks=jwks,
        audience=request.audience,
        roles_claim=request.roles_claim,
        allowed_roles=tuple(dict.fromkeys(allowed)),
    )


@dataclass
class Issuer:
    """A registered issuer with the keys in use and its refresh state."""

    record: IssuerRecord
    keys: KeySet
    #: Monotonic time of the last refresh attempt (0: none since start).
    last_refresh: float = 0.0
    refresh_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The refresh of keys held past their age, while it runs (jwt_verifier.py).
    refreshing: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.record.name

    def with_keys(self, keys: KeySet) -> None:
        self.keys = keys
        self.record = replace(self.record, jwks=keys.document, refreshed_at=time.time())


class IssuerRegistry:
    """The issuers the gateway trusts, by name and by `iss`; kept in step with the store."""

    def __init__(self, records: Iterable[IssuerRecord] = ()) -> None:
        self._by_name: dict[str, Issuer] = {}
        self._by_iss: dict[str, Issuer] = {}
        for record in records:
            # A stored JWKS was checked when stored (a refresh's may hold no usable key: the
            # issuer withdrew them); one that no longer parses is skipped (its tokens are
            # refused) rather than stopping the node.
            try:
                keys = parse_jwks(record.jwks, strict=False)
            except Error as e:
                log.warning("issuer %s skipped: its stored JWKS: %s", record.name, e.message)
                continue
            self.add(Issuer(record, keys))

    def add(self, issuer: Issuer) -> None:
        self._by_name[issuer.name] = issuer
        self._by_iss[issuer.record.issuer] = issuer

    def remove(self, name: str) -> None:
        issuer = self._by_name.pop(name, None)
        if issuer is not None:
            self._by_iss.pop(issuer.record.issuer, None)

    def by_iss(self, iss: str) -> Issuer | None:
        return self._by_iss.get(iss)

    def by_name(self, name: str) -> Issuer | None:
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self._by_name)
