"""The audit outbox: an admin change and its audit record, committed together.

The audit log is appended by a process of its own, in transactions of its own,
so a change committed to the store and its record appended to the log are two
commits: a node killed between them would keep a change the log never shows.
An admin change therefore runs with a `Pending` record in a context variable
(audit/changes.py sets it; `asyncio.to_thread` carries it to the store's thread),
and the store method that makes the change calls `enlist(conn)` inside its own
transaction when it changed something: the record is committed with the change,
with the name of the node process that wrote it (`owner`, store/outbox_owner.py).
Once the record is in the log the row is deleted. A row left by a kill, or by an
append that failed, is appended by a node's drain (audit/changes.py), which first
claims it (`claim`): a compare-and-set on (`claimed_by`, `claimed_at`) as it read
them, so of two nodes that read the same row one claim succeeds and one sees
rowcount 0. Which rows a drain may take, and when, is audit/changes.py's to say.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update

from donjon import boundedjson
from donjon.secret import Secret
from donjon.store.database import Engine
from donjon.store.tables import audit_outbox

__all__ = [
    "OFFLINE",
    "PENDING",
    "AuditOutbox",
    "OutboxRow",
    "Pending",
    "enlist",
    "note",
    "row_mac",
]


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
    #: The node process running the change (store/outbox_owner.py), written in the row.
    owner: str | None = None
    #: The key of the row's MAC (a subkey of the master key); None: no MAC (tests alone).
    mac_key: Secret[bytes] | None = None

    def as_event(self) -> dict[str, Any]:
        return {**self.event, "detail": {**self.event.get("detail", {}), **self.facts}}


PENDING: ContextVar[Pending | None] = ContextVar("donjon_audit_pending", default=None)

#: The owner of a row written by a command working on the data dir with no node of its
#: own (`donjon up`'s key, made before its node starts): it never appends the record
#: itself, so the next drain of any node takes the row at once (audit/changes.py).
OFFLINE = "offline"


def enlist(conn: Connection, **facts: Any) -> None:
    """Write the pending record (if any) in `conn`'s transaction, which made a change."""
    pending = PENDING.get()
    if pending is None or pending.enlisted:  # one row per change, with its first write
        return
    pending.facts.update(facts)
    if pending.stored:
        text = json.dumps(pending.as_event())
        key = pending.mac_key
        conn.execute(
            insert(audit_outbox).values(
                id=pending.id,
                event=text,
                created_at=time.time(),
                owner=pending.owner,
                mac=None if key is None else row_mac(key, pending.id, pending.owner, text),
            )
        )
    pending.enlisted = True


def note(**facts: Any) -> None:
    """Add facts the caller knows before its write to the pending record (if any)."""
    pending = PENDING.get()
    if pending is not None and not pending.enlisted:
        pending.facts.update(facts)


@dataclass(frozen=True)
class OutboxRow:
    """A record whose change committed and whose append was not seen."""

    id: str
    #: None: the row holds no record (edited, or torn by a disk): `_event_of`.
    event: dict[str, Any] | None
    created_at: float
    owner: str | None
    claimed_by: str | None
    claimed_at: float | None
    #: False: the row's MAC is not its writer's (slid in through the database, or written
    #: by a version before MACs): not appended as a change's record (audit/changes.py).
    authentic: bool = True


class AuditOutbox:
    """Queries over `audit_outbox`; with `mac_key`, rows are read with their MAC checked."""

    def __init__(self, engine: Engine, mac_key: Secret[bytes] | None = None) -> None:
        self._engine = engine
        self.mac_key = mac_key

    def waiting(self) -> list[OutboxRow]:
        """Every row, oldest first."""
        t = audit_outbox.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(
                    t.id, t.event, t.created_at, t.owner, t.claimed_by, t.claimed_at, t.mac
                ).order_by(t.created_at)
            ).all()
        return [
            OutboxRow(
                r.id,
                _event_of(r.event),
                _time(r.created_at),
                r.owner,
                r.claimed_by,
                r.claimed_at,
                self._authentic(r.id, r.owner, r.event, r.mac),
            )
            for r in rows
        ]

    def _authentic(self, row_id: object, owner: object, event: object, mac: object) -> bool:
        if self.mac_key is None:
            return True
        expected = row_mac(self.mac_key, str(row_id), None if owner is None else str(owner), event)
        return isinstance(mac, str) and hmac.compare_digest(mac, expected)

    def claim(self, row: OutboxRow, claimer: str, now: float) -> bool:
        """Claim `row` for `claimer` if its claim is still the one read in `row`; whether
        this call claimed it (a concurrent drain that claimed it first makes it False)."""
        t = audit_outbox.c
        with self._engine.begin() as conn:
            done = conn.execute(
                update(audit_outbox)
                .where(
                    and_(
                        t.id == row.id,
                        func.coalesce(t.claimed_by, "") == (row.claimed_by or ""),
                        func.coalesce(t.claimed_at, -1.0)
                        == (row.claimed_at if row.claimed_at is not None else -1.0),
                    )
                )
                .values(claimed_by=claimer, claimed_at=now)
            )
        return done.rowcount == 1

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


def _event_of(text: object) -> dict[str, Any] | None:
    """A row's record, or None when it holds none: one damaged row must not stop the drain
    (and the node's start) that appends every other (audit/changes.py records it)."""
    try:
        event = boundedjson.loads(str(text))
    except (ValueError, boundedjson.JSONTooDeep):
        return None
    if not isinstance(event, dict) or not isinstance(event.get("detail", {}), dict):
        return None
    if not all(isinstance(event.get(k), str) for k in ("actor", "action", "target", "outcome")):
        return None
    return event


def _time(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0  # a time edited into none: the row is as old as can be


def row_mac(key: Secret[bytes], row_id: str, owner: str | None, event: object) -> str:
    """The row's MAC: its id, writer and event, so none can be swapped for another's."""
    body = f"{row_id}\0{owner or ''}\0{event}".encode("utf-8", "surrogatepass")
    return hmac.new(key.reveal(), body, hashlib.sha256).hexdigest()
