"""Quarantined functions: what the monitor (or an admin) stopped, why, and on which alert.

A row per quarantined function name. It outlives restarts and new versions:
only `donjon function release NAME` (which deletes the row) serves it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Engine, Float, String, Table, delete, select
from sqlalchemy.exc import IntegrityError

from donjon.store.audit_outbox import enlist
from donjon.store.tables import metadata

__all__ = ["QuarantineRecord", "QuarantineStore", "quarantines"]

quarantines = Table(
    "quarantines",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("reason", String(512), nullable=False),
    #: The `alert.raised` record it answers (None: an admin quarantined it by hand).
    Column("alert_seq", BigInteger, nullable=True),
    Column("since", Float, nullable=False),
    #: Who quarantined it: "system:monitor" or a principal's label.
    Column("by", String(128), nullable=False),
)


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    name: str
    reason: str
    alert_seq: int | None
    since: float
    by: str


class QuarantineStore:
    """Queries over `quarantines`. Blocking: call off the event loop."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, record: QuarantineRecord) -> bool:
        """Quarantine a function; False if it already is (the first reason stays)."""
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    quarantines.insert().values(
                        name=record.name,
                        reason=record.reason,
                        alert_seq=record.alert_seq,
                        since=record.since,
                        by=record.by,
                    )
                )
                enlist(conn)
        except IntegrityError:
            return False
        return True

    def remove(self, name: str) -> bool:
        """Release a function; False if it was not quarantined."""
        with self._engine.begin() as conn:
            removed = conn.execute(delete(quarantines).where(quarantines.c.name == name))
            if removed.rowcount > 0:
                enlist(conn)
        return removed.rowcount > 0

    def all(self) -> list[QuarantineRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(quarantines).order_by(quarantines.c.name)).all()
        return [
            QuarantineRecord(
                name=r.name,
                reason=r.reason,
                alert_seq=None if r.alert_seq is None else int(r.alert_seq),
                since=r.since,
                by=r.by,
            )
            for r in rows
        ]
