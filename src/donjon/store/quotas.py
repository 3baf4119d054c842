"""Daily quotas (denial of wallet) and the usage counted against them.

`quotas`: one row per subject with a quota (`key:<id>`, `role:<name>`,
`function:<name>`); a measure left NULL is unlimited. `quota_usage`: per subject
and UTC day, the invocations and compute milliseconds counted so far. Usage is
written as increments (`add_usage`), so several nodes sharing one database each
add their own share and the row holds the sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Engine, Float, String, Table, delete, select, update
from sqlalchemy.exc import IntegrityError

from donjon.store.audit_outbox import enlist
from donjon.store.tables import metadata

__all__ = ["QuotaRecord", "QuotaStore", "quota_usage", "quotas"]

quotas = Table(
    "quotas",
    metadata,
    Column("subject", String(200), primary_key=True),
    Column("max_invocations", BigInteger, nullable=True),
    Column("max_compute_ms", BigInteger, nullable=True),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(200), nullable=False),
)

quota_usage = Table(
    "quota_usage",
    metadata,
    Column("subject", String(200), primary_key=True),
    #: The UTC date, YYYY-MM-DD (sorts as it reads).
    Column("day", String(10), primary_key=True),
    Column("invocations", BigInteger, nullable=False),
    Column("compute_ms", BigInteger, nullable=False),
)

#: Attempts of one increment when another node inserts the same row meanwhile.
_UPSERT_TRIES = 3


@dataclass(frozen=True, slots=True)
class QuotaRecord:
    subject: str
    max_invocations: int | None
    max_compute_ms: int | None
    updated_at: float
    updated_by: str


class QuotaStore:
    """Queries over `quotas` and `quota_usage`. Blocking: call off the event loop."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def all(self) -> list[QuotaRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(quotas).order_by(quotas.c.subject)).all()
        return [
            QuotaRecord(
                subject=r.subject,
                max_invocations=None if r.max_invocations is None else int(r.max_invocations),
                max_compute_ms=None if r.max_compute_ms is None else int(r.max_compute_ms),
                updated_at=float(r.updated_at),
                updated_by=r.updated_by,
            )
            for r in rows
        ]

    def put(self, record: QuotaRecord) -> bool:
        """Set a subject's quota (replacing its previous one); True if it had none."""
        values = {
            "max_invocations": record.max_invocations,
            "max_compute_ms": record.max_compute_ms,
            "updated_at": record.updated_at,
            "updated_by": record.updated_by,
        }
        with self._engine.begin() as conn:
            done = conn.execute(
                update(quotas).where(quotas.c.subject == record.subject).values(**values)
            )
            created = not done.rowcount
            if created:
                conn.execute(quotas.insert().values(subject=record.subject, **values))
            enlist(conn, created=created)
        return created

    def remove(self, subject: str) -> bool:
        """Remove a subject's quota; False if it had none (its usage rows stay until pruned)."""
        with self._engine.begin() as conn:
            removed = conn.execute(delete(quotas).where(quotas.c.subject == subject)).rowcount > 0
            if removed:
                enlist(conn)
        return removed

    def usage(self, day: str) -> dict[str, tuple[int, int]]:
        """Every subject's (invocations, compute ms) of `day`, as stored."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(
                    quota_usage.c.subject, quota_usage.c.invocations, quota_usage.c.compute_ms
                ).where(quota_usage.c.day == day)
            ).all()
        return {r.subject: (int(r.invocations), int(r.compute_ms)) for r in rows}

    def add_usage(self, day: str, deltas: Mapping[str, tuple[int, int]]) -> None:
        """Add (invocations, compute ms) to each subject's row of `day`, in one transaction."""
        for attempt in range(_UPSERT_TRIES):
            try:
                with self._engine.begin() as conn:
                    for subject, (calls, ms) in sorted(deltas.items()):
                        if not calls and not ms:
                            continue
                        done = conn.execute(
                            update(quota_usage)
                            .where(quota_usage.c.subject == subject, quota_usage.c.day == day)
                            .values(
                                invocations=quota_usage.c.invocations + calls,
                                compute_ms=quota_usage.c.compute_ms + ms,
                            )
                        )
                        if not done.rowcount:
                            conn.execute(
                                quota_usage.insert().values(
                                    subject=subject, day=day, invocations=calls, compute_ms=ms
                                )
                            )
                return
            except IntegrityError:  # another node inserted the row first: update it now
                if attempt == _UPSERT_TRIES - 1:
                    raise

    def prune(self, before_day: str) -> int:
        """Delete the usage of days before `before_day`; how many rows went."""
        with self._engine.begin() as conn:
            return conn.execute(delete(quota_usage).where(quota_usage.c.day < before_day)).rowcount
