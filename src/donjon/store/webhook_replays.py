"""The webhook replay cache: delivery ids accepted under each hook's secret (its path, for
a hook that checks none: triggers/webhooks/service.py, `replay_scope`), until they expire.

`claim` is one INSERT: a conflict means the id was accepted before (a replay), on
this node or on any other sharing the database, before or after a restart. An
expired row not purged yet is taken over by an UPDATE guarded by its expiry, so two
nodes claiming it at once cannot both win.
"""

from __future__ import annotations

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from donjon.store.tables import webhook_deliveries

__all__ = ["ReplayStore"]

_T = webhook_deliveries


class ReplayStore:
    """Queries over `webhook_deliveries`. Blocking: call off the event loop."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def claim(self, hook: str, delivery_id: str, expires_at: float, now: float) -> bool:
        """Remember `delivery_id` at `hook` until `expires_at`; False if it is remembered
        already (a replay)."""
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(_T).values(hook=hook, delivery_id=delivery_id, expires_at=expires_at)
                )
            return True
        except IntegrityError:
            pass
        with self._engine.begin() as conn:
            taken = conn.execute(
                update(_T)
                .where((_T.c.hook == hook) & (_T.c.delivery_id == delivery_id))
                .where(_T.c.expires_at < now)
                .values(expires_at=expires_at)
            )
        return taken.rowcount == 1

    def release(self, hook: str, delivery_id: str) -> None:
        """Forget a claim whose delivery was not taken after all (the sender may retry it)."""
        with self._engine.begin() as conn:
            conn.execute(delete(_T).where((_T.c.hook == hook) & (_T.c.delivery_id == delivery_id)))

    def remembered(self, hook: str, delivery_id: str, now: float) -> bool:
        """Whether `delivery_id` is remembered at `hook` (unexpired)."""
        query = select(_T.c.expires_at).where(
            (_T.c.hook == hook) & (_T.c.delivery_id == delivery_id)
        )
        with self._engine.connect() as conn:
            expires = conn.execute(query).scalar_one_or_none()
        return expires is not None and float(expires) >= now

    def purge(self, now: float) -> int:
        """Delete the expired rows; how many."""
        with self._engine.begin() as conn:
            return int(conn.execute(delete(_T).where(_T.c.expires_at < now)).rowcount)
