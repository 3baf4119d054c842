"""API key records. Only a keyed hash of each key is stored."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update

from donjon.store.audit_outbox import enlist
from donjon.store.tables import api_keys

__all__ = ["KeyRecord", "KeyStore"]


@dataclass(frozen=True)
class KeyRecord:
    """An API key as stored: never the key itself."""

    id: str
    name: str
    role: str
    functions: tuple[str, ...] | None
    digest: bytes
    created_at: float
    revoked_at: float | None = None
    #: After this time the key gets 401; None: it does not expire.
    expires_at: float | None = None
    #: The digest before the last rotation, valid until `previous_until`.
    previous_digest: bytes | None = None
    previous_until: float | None = None
    #: As last written (at most once a minute per key; the node holds newer times).
    last_used_at: float | None = None
    #: The key's own limits (None each: its role's, else the server's default).
    rate: str | None = None
    burst: int | None = None
    concurrency: int | None = None


class KeyStore:
    """Queries over `api_keys`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, record: KeyRecord) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(api_keys).values(
                    id=record.id,
                    name=record.name,
                    role=record.role,
                    functions=None if record.functions is None else json.dumps(record.functions),
                    digest=record.digest,
                    created_at=record.created_at,
                    revoked_at=record.revoked_at,
                    expires_at=record.expires_at,
                    rate=record.rate,
                    burst=record.burst,
                    concurrency=record.concurrency,
                )
            )
            enlist(conn)

    def all(self) -> list[KeyRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
        return [
            KeyRecord(
                id=r.id,
                name=r.name,
                role=r.role,
                functions=None if r.functions is None else tuple(json.loads(r.functions)),
                digest=bytes(r.digest),
                created_at=r.created_at,
                revoked_at=r.revoked_at,
                expires_at=r.expires_at,
                previous_digest=None if r.previous_digest is None else bytes(r.previous_digest),
                previous_until=r.previous_until,
                last_used_at=r.last_used_at,
                rate=r.rate,
                burst=r.burst,
                concurrency=r.concurrency,
            )
            for r in rows
        ]

    def get(self, key_id: str) -> KeyRecord | None:
        return next((k for k in self.all() if k.id == key_id), None)

    def revoke(self, key_id: str) -> bool:
        """Mark a key revoked; False when no live key has that id."""
        with self._engine.begin() as conn:
            result = conn.execute(
                update(api_keys)
                .where((api_keys.c.id == key_id) & api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
            if result.rowcount > 0:
                enlist(conn)
        return result.rowcount > 0

    def rotate(self, key_id: str, digest: bytes, previous_until: float) -> KeyRecord | None:
        """Give a live key a new digest; the old one stays valid until `previous_until`."""
        with self._engine.begin() as conn:
            row = conn.execute(
                select(api_keys.c.digest).where(
                    (api_keys.c.id == key_id) & api_keys.c.revoked_at.is_(None)
                )
            ).first()
            if row is None:
                return None
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id)
                .values(
                    digest=digest, previous_digest=bytes(row.digest), previous_until=previous_until
                )
            )
            enlist(conn)
        return self.get(key_id)

    def reissue(self, key_id: str, digest: bytes) -> None:
        """Give a key (revoked or not) a new digest and make it live: local `donjon up` only."""
        with self._engine.begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id)
                .values(
                    digest=digest,
                    revoked_at=None,
                    expires_at=None,
                    previous_digest=None,
                    previous_until=None,
                )
            )
            enlist(conn)

    def roles_in_use(self) -> dict[str, list[str]]:
        """Live key ids by role name."""
        out: dict[str, list[str]] = {}
        for k in self.all():
            if k.revoked_at is None:
                out.setdefault(k.role, []).append(k.id)
        return out

    def touch(self, used: Mapping[str, float]) -> None:
        """Write last-used times (one batch: the node calls this at most once a minute)."""
        if not used:
            return
        with self._engine.begin() as conn:
            for key_id, ts in used.items():
                conn.execute(
                    update(api_keys)
                    .where(
                        (api_keys.c.id == key_id)
                        & (api_keys.c.last_used_at.is_(None) | (api_keys.c.last_used_at < ts))
                    )
                    .values(last_used_at=ts)
                )
