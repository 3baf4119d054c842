"""Trusted JWT issuers, with the last JWKS document each one published."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from donjon.store.audit_outbox import enlist
from donjon.store.database import StoreConflict
from donjon.store.tables import issuer_names, issuers

__all__ = ["IssuerRecord", "IssuerStore"]


@dataclass(frozen=True)
class IssuerRecord:
    """One trusted issuer as stored."""

    name: str
    issuer: str
    #: Where its keys are fetched (https://); None: the JWKS was given once, inline.
    jwks_url: str | None
    #: The JWKS document in use (fetched at `issuer add` or on the last refresh).
    jwks: str
    audience: str
    roles_claim: str
    allowed_roles: tuple[str, ...]
    created_at: float
    refreshed_at: float


class _NameOfAnother(Exception):
    """An issuer name first added for another issuer (the transaction rolls back)."""

    def __init__(self, issuer: str) -> None:
        super().__init__(issuer)
        self.issuer = issuer


class IssuerStore:
    """Queries over `issuers`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, record: IssuerRecord) -> None:
        """Store a new issuer; `StoreConflict` if the name or the issuer is taken, or the
        name was another issuer's before (`issuer_names`)."""
        try:
            with self._engine.begin() as conn:
                named = conn.execute(
                    select(issuer_names.c.issuer).where(issuer_names.c.name == record.name)
                ).scalar_one_or_none()
                if named is None:
                    conn.execute(
                        insert(issuer_names).values(
                            name=record.name, issuer=record.issuer, first_added=record.created_at
                        )
                    )
                elif named != record.issuer:
                    raise _NameOfAnother(named)
                conn.execute(
                    insert(issuers).values(
                        name=record.name,
                        issuer=record.issuer,
                        jwks_url=record.jwks_url,
                        jwks=record.jwks,
                        audience=record.audience,
                        roles_claim=record.roles_claim,
                        allowed_roles=json.dumps(record.allowed_roles),
                        created_at=record.created_at,
                        refreshed_at=record.refreshed_at,
                    )
                )
                enlist(conn)
        except _NameOfAnother as e:
            raise StoreConflict(
                f"the issuer name {record.name!r} named issuer {e.issuer[:200]!r} before: its"
                f" principals (jwt:{record.name}:SUB) may own functions and invocations,"
                " which another issuer's subjects of the same names must not get",
                hint="pick another name (a name is one issuer's for good)",
            ) from e
        except IntegrityError as e:
            raise StoreConflict(
                f"an issuer named {record.name!r} or with issuer {record.issuer!r} exists already",
                hint="`donjon issuer rm NAME` first, or pick another name",
            ) from e

    def all(self) -> list[IssuerRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(issuers).order_by(issuers.c.name)).all()
        return [
            IssuerRecord(
                name=r.name,
                issuer=r.issuer,
                jwks_url=r.jwks_url,
                jwks=r.jwks,
                audience=r.audience,
                roles_claim=r.roles_claim,
                allowed_roles=tuple(json.loads(r.allowed_roles)),
                created_at=r.created_at,
                refreshed_at=r.refreshed_at,
            )
            for r in rows
        ]

    def set_jwks(self, name: str, created_at: float, jwks: str, refreshed_at: float) -> bool:
        """Store the keys fetched for the issuer `name` added at `created_at`; False (and
        nothing written) if it was removed, or removed and added again, meanwhile."""
        with self._engine.begin() as conn:
            updated = conn.execute(
                update(issuers)
                .where(issuers.c.name == name, issuers.c.created_at == created_at)
                .values(jwks=jwks, refreshed_at=refreshed_at)
            ).rowcount
            if updated:
                enlist(conn)  # the keys' change and its record (gateway/admin_issuers.py)
        return bool(updated)

    def remove(self, name: str) -> bool:
        with self._engine.begin() as conn:
            gone = conn.execute(
                delete(issuers).where(issuers.c.name == name).returning(issuers.c.issuer)
            ).scalar_one_or_none()
            if gone is not None:
                # Its name stays its issuer's (one added before names were kept had none).
                kept = select(issuer_names.c.name).where(issuer_names.c.name == name)
                if conn.execute(kept).first() is None:
                    conn.execute(
                        insert(issuer_names).values(name=name, issuer=gone, first_added=0.0)
                    )
                enlist(conn)
        return gone is not None
