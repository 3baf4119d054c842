"""Custom role documents (the built-in roles live in code, never here)."""

from __future__ import annotations

import json
import time

from sqlalchemy import Engine, delete, insert, select, update

from donjon.store.audit_outbox import enlist
from donjon.store.tables import roles

__all__ = ["RoleStore"]


class RoleStore:
    """Queries over `roles`: each row is a validated role document, as JSON."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def all(self) -> list[tuple[str, str, float]]:
        """(name, document JSON, updated_at) of every custom role."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(roles).order_by(roles.c.name)).all()
        return [(r.name, r.document, r.updated_at) for r in rows]

    def put(self, name: str, document: dict[str, object]) -> bool:
        """Store or replace a role; True when it was new."""
        text = json.dumps(document, sort_keys=True)
        now = time.time()
        with self._engine.begin() as conn:
            done = conn.execute(
                update(roles).where(roles.c.name == name).values(document=text, updated_at=now)
            )
            created = not done.rowcount
            if created:
                conn.execute(insert(roles).values(name=name, document=text, updated_at=now))
            enlist(conn, created=created)
        return created

    def remove(self, name: str) -> bool:
        with self._engine.begin() as conn:
            removed = conn.execute(delete(roles).where(roles.c.name == name)).rowcount > 0
            if removed:
                enlist(conn)
        return removed
