"""Throttles in force (monitor/throttles.py): kept so that a restart does not lift them.

A row per throttled subject (kind and id), with its rate and its end. The node serves
from memory; the rows are what a starting node loads (those not yet ended) and what
`set` and `lift` change, in the transaction of the change's audit record (the outbox).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Integer,
    String,
    Table,
    delete,
    insert,
    select,
)

from donjon.store.audit_outbox import enlist
from donjon.store.tables import metadata

__all__ = ["ThrottleRow", "ThrottleStore", "throttles"]

throttles = Table(
    "throttles",
    metadata,
    #: principal, source or function.
    Column("kind", String(16), primary_key=True),
    Column("subject", String(512), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("period_s", Float, nullable=False),
    Column("since", Float, nullable=False),
    Column("until", Float, nullable=False),
    Column("reason", String(512), nullable=False),
    #: The `alert.raised` record it answers (None: set by hand).
    Column("alert_seq", BigInteger, nullable=True),
)


@dataclass(frozen=True, slots=True)
class ThrottleRow:
    kind: str
    subject: str
    count: int
    period_s: float
    since: float
    until: float
    reason: str
    alert_seq: int | None


class ThrottleStore:
    """Queries over `throttles`. Blocking: call off the event loop."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def put(self, row: ThrottleRow) -> None:
        """Keep `row`, replacing the subject's throttle (if any)."""
        key = (throttles.c.kind == row.kind) & (throttles.c.subject == row.subject)
        with self._engine.begin() as conn:
            conn.execute(delete(throttles).where(key))
            conn.execute(
                insert(throttles).values(
                    kind=row.kind,
                    subject=row.subject,
                    count=row.count,
                    period_s=row.period_s,
                    since=row.since,
                    until=row.until,
                    reason=row.reason,
                    alert_seq=row.alert_seq,
                )
            )
            enlist(conn)

    def remove(self, kind: str, subject: str, since: float | None = None) -> None:
        """Forget the subject's throttle (only the one set at `since`, when given: not
        one set meanwhile)."""
        key = (throttles.c.kind == kind) & (throttles.c.subject == subject)
        if since is not None:
            key = key & (throttles.c.since == since)
        with self._engine.begin() as conn:
            conn.execute(delete(throttles).where(key))
            enlist(conn)

    def in_force(self, now: float) -> list[ThrottleRow]:
        """The throttles not ended at `now`, oldest first; ended ones are deleted."""
        with self._engine.begin() as conn:
            conn.execute(delete(throttles).where(throttles.c.until <= now))
            rows = conn.execute(select(throttles).order_by(throttles.c.since)).all()
        return [
            ThrottleRow(
                r.kind,
                r.subject,
                int(r._mapping["count"]),  # Row.count is tuple's method
                float(r.period_s),
                float(r.since),
                float(r.until),
                r.reason,
                None if r.alert_seq is None else int(r.alert_seq),
            )
            for r in rows
        ]
