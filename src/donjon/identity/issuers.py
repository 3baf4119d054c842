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
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
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
    """The body of `POST /v1/issuers`: validated here, described by /openapi.json."""

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
    # Role names come as JSON strings: lax for the enum alone.
    allowed_roles: list[Annotated[Role, Strict(False)]] = Field(
        default_factory=lambda: [Role(r) for r in DEFAULT_ALLOWED_ROLES], min_length=1
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


def parse_issuer_spec(body: Any) -> IssuerSpec:
    """Check an `issuer add` request; `IssuerError` says what is wrong with it."""
    usage = (
        'body must be {"name", "issuer", "audience", and "jwks_url" (https://) or '
        '"jwks" (a JWKS object), optional "roles_claim" and "allowed_roles"}'
    )
    if not isinstance(body, dict):
        raise IssuerError(usage)
    try:
        request = IssuerRequest.model_validate(body)
    except ValidationError as e:
        problems = []
        for err in e.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "(body)"
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise IssuerError("; ".join(problems[:10]), hint=usage) from None
    return IssuerSpec(
        name=request.name,
        issuer=request.issuer,
        jwks_url=request.jwks_url,
        jwks=json.dumps(request.jwks) if request.jwks is not None else None,
        audience=request.audience,
        roles_claim=request.roles_claim,
        allowed_roles=tuple(dict.fromkeys(r.value for r in request.allowed_roles)),
    )


@dataclass
class Issuer:
    """A registered issuer with the keys in use and its refresh state."""

    record: IssuerRecord
    keys: KeySet
    #: Monotonic time of the last refresh attempt (0: none since start).
    last_refresh: float = 0.0
    refresh_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

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
            # A stored JWKS was checked when stored; one that no longer parses is skipped
            # (its tokens are refused) rather than stopping the node.
            try:
                keys = parse_jwks(record.jwks)
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

    def __len__(self) -> int:
        return len(self._by_name)
