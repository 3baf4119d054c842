"""The audit outbox: an admin change and its audit record, committed together.

The audit log is appended by a process of its own, in transactions of its own,
so a change committed to the store and its record appended to the log are two
commits: a node killed between them would keep a change the log never shows.
An admin change therefore runs with a `Pending` record in a context variable
(audit/changes.py sets it; `asyncio.to_thread` carries it to the store's thread),
and the store method that makes the change calls `enlist(conn)` inside its own
transaction when it changed something: the record is committed with the change.
Once the record is in the log the row is deleted; a node finds the rows left by
a kill at its next start and appends their records then.
"""

from __future__ import annotations

import json
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from donjon.store.database import Engine
from donjon.store.tables import audit_outbox

__all__ = ["PENDING", "AuditOutbox", "Pending", "enlist", "note"]


@dataclass
class Pending:
    """The record of the change under way: `event` (JSON-ready), and what the store added."""

    id: str
    event: dict[str, Any]
    #: Facts only the store method knew (a secret's new version), merged into the detail.
    facts: dict[str, Any] = field(default_factory=dict)
    #: Set once a change was written with this record.
    enlisted: bool = False
    #: False where no outbox is kept (a subsystem tested alone): the facts only.
    stored: bool = True

    def as_event(self) -> dict[str, Any]:
        return {**self.event, "detail": {**self.event.get("detail", {}), **self.facts}}


PENDING: ContextVar[Pending | None] = ContextVar("donjon_audit_pending", default=None)


def enlist(conn: Connection, **facts: Any) -> None:
    """Write the pending record (if any) in `conn`'s transaction, which made a change."""
    pending = PENDING.get()
    if pending is None or pending.enlisted:  # one row per change, with its first write
        return
    pending.facts.update(facts)
    if pending.stored:
        conn.execute(
            insert(audit_outbox).values(
                id=pending.id, event=json.dumps(pending.as_event()), created_at=time.time()
            )
        )
    pending.enlisted = True


def note(**facts: Any) -> None:
    """Add facts the caller knows before its write to the pending record (if any)."""
    pending = PENDING.get()
    if pending is not None and not pending.enlisted:
        pending.facts.update(facts)


class AuditOutbox:
    """Queries over `audit_outbox`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def waiting(self, older_than_s: float = 0.0) -> list[tuple[str, dict[str, Any]]]:
        """The records whose change committed and whose append was not seen, oldest first;
        with `older_than_s`, only rows written at least that long ago."""
        query = select(audit_outbox.c.id, audit_outbox.c.event).order_by(audit_outbox.c.created_at)
        if older_than_s > 0:
            query = query.where(audit_outbox.c.created_at < time.time() - older_than_s)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(r.id, json.loads(r.event)) for r in rows]

    def holds(self, entry_id: str) -> bool:
        """Whether the row `entry_id` is stored: the change written with it committed."""
        with self._engine.connect() as conn:
            found = conn.execute(
                select(audit_outbox.c.id).where(audit_outbox.c.id == entry_id)
            ).first()
        return found is not None

    def remove(self, entry_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(audit_outbox).where(audit_outbox.c.id == entry_id))
