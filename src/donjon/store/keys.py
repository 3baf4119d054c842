"""API key records. Only a keyed hash of each key is stored."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update

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
                )
            )

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
            )
            for r in rows
        ]

    def revoke(self, key_id: str) -> bool:
        """Mark a key revoked; False when no live key has that id."""
        with self._engine.begin() as conn:
            result = conn.execute(
                update(api_keys)
                .where((api_keys.c.id == key_id) & api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        return result.rowcount > 0
