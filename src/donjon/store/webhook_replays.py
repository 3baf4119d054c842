"""The webhook replay cache: delivery ids accepted under each hook's secret (its path, for
a hook that checks none: triggers/webhooks/service.py, `replay_scope`), until they expire.

`claim` is one INSERT: a conflict means the id was taken before (a replay), on
this node or on any other sharing the database, before or after a restart. The row
names the node process taking the delivery (`claimed_by`, store/outbox_owner.py) until
`settle` says its event is queued: the claim and the queued event are two commits, and
a node killed between them left a row no event answered, so the sender's retry of a
delivery never taken was refused as a replay for days. A conflicting row is taken over
(by an UPDATE guarded by what was read, so two nodes claiming it at once cannot both
win) when it has expired, or when it is unsettled and its process is gone.
"""

from __future__ import annotations

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from donjon.store.outbox_owner import gone_here
from donjon.store.tables import webhook_deliveries

__all__ = ["ReplayStore"]

_T = webhook_deliveries


class ReplayStore:
    """Queries over `webhook_deliveries`. Blocking: call off the event loop."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def claim(self, hook: str, delivery_id: str, expires_at: float, now: float, owner: str) -> bool:
        """Remember `delivery_id` at `hook` until `expires_at`, as `owner`'s until it is
        settled; False if it is remembered already (a replay)."""
        key = (_T.c.hook == hook) & (_T.c.delivery_id == delivery_id)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(_T).values(
                        hook=hook, delivery_id=delivery_id, expires_at=expires_at, claimed_by=owner
                    )
                )
            return True
        except IntegrityError:
            pass
        with self._engine.begin() as conn:
            row = conn.execute(select(_T.c.expires_at, _T.c.claimed_by).where(key)).first()
            if row is None:  # released meanwhile: the sender sends it again
                return False
            left = row.claimed_by is not None and gone_here(row.claimed_by)
            if not (float(row.expires_at) < now or left):
                return False
            same = (
                _T.c.claimed_by.is_(None)
                if row.claimed_by is None
                else _T.c.claimed_by == row.claimed_by
            )
            taken = conn.execute(
                update(_T)
                .where(key & (_T.c.expires_at == row.expires_at) & same)
                .values(expires_at=expires_at, claimed_by=owner)
            )
        return taken.rowcount == 1

    def settle(self, hook: str, delivery_id: str, expires_at: float, owner: str) -> None:
        """`owner`'s claim of `delivery_id` was queued: remembered until `expires_at`."""
        with self._engine.begin() as conn:
            conn.execute(
                update(_T)
                .where((_T.c.hook == hook) & (_T.c.delivery_id == delivery_id))
                .where(_T.c.claimed_by == owner)
                .values(expires_at=expires_at, claimed_by=None)
            )

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
