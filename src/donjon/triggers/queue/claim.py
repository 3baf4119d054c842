"""The queue's claim: lease up to N due invocations in one statement (sql.py runs it).

A claim is one statement, so the write lock it takes is the first thing it does:

    WITH picked AS MATERIALIZED (
        SELECT id FROM invocations WHERE <due>
        ORDER BY <calls of its function running on this node>, next_at LIMIT :n
        FOR UPDATE SKIP LOCKED)
    UPDATE invocations SET status = 'running', lease_token = :t, lease_expires = :e,
        attempts = attempts + 1
    WHERE id IN (SELECT id FROM picked) AND <due>
    RETURNING *

SQLite has no row locks and leaves `FOR UPDATE SKIP LOCKED` out (SQLAlchemy does not
render it there, nor MATERIALIZED): its one writer at a time serialises claims, and the
repeated `<due>` makes a row already claimed no longer match. On PostgreSQL the same
statement, on the same schema, is the multi-node backend: each node's claim skips the
rows another holds locked, and the lease columns say who owns a row once the transaction
ends. Every outcome is written `WHERE id = :id AND lease_token = :t`: a worker whose
lease expired and was claimed again writes nothing.

The node's workers are shared by every function, so a claim does not take the oldest
due rows alone: it takes first those of the functions whose owner has the fewest calls
running on this node (workers.py counts them), then the oldest. A long backlog of slow
events (a tenant flooding its own queue or channel, over one function or many) cannot
hold another owner's event behind all of it: that event is claimed by the next worker
that frees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, case, or_, select, update

from donjon.store.tables import invocations as inv
from donjon.triggers.queue.interface import Status

__all__ = ["UNREADABLE", "claim_statement", "dead_unreadable", "due"]

#: The error type of an invocation whose sealed event or result does not open.
UNREADABLE = "Unreadable"


def due(now: float) -> Any:
    """Rows a worker may claim at `now`: queued or failed and due, or running with an
    expired lease."""
    return or_(
        and_(inv.c.status.in_([Status.QUEUED.value, Status.FAILED.value]), inv.c.next_at <= now),
        and_(inv.c.status == Status.RUNNING.value, inv.c.lease_expires <= now),
    )


def claim_statement(
    now: float, limit: int, token: str, expires: float, running: Mapping[str, int] | None = None
) -> Any:
    """The claim (see above): lease up to `limit` due rows under `token`, those of the
    functions with the fewest calls in `running` (function -> the calls on this node that
    order it: its owner's) first."""
    busy = {name: count for name, count in (running or {}).items() if count > 0}
    order: list[Any] = [inv.c.next_at]
    if busy:
        order.insert(0, case(busy, value=inv.c.function, else_=0))
    picked = (
        select(inv.c.id)
        .where(due(now))
        .order_by(*order)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
        # Run once: as `id IN (subquery)` PostgreSQL ran it again for each row of a nested
        # loop, each run skipping the row just leased for the next, so one claim took all.
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        update(inv)
        .where(inv.c.id.in_(select(picked.c.id)), due(now))
        .values(
            status=Status.RUNNING.value,
            lease_token=token,
            lease_expires=expires,
            attempts=inv.c.attempts + 1,
            updated_at=now,
        )
        .returning(*inv.c)
    )


def dead_unreadable(invocation_id: str, token: str, error: str) -> Any:
    """Dead-letter a claimed invocation whose sealed event does not open: no attempt can
    run it, and it must not end the claim of the others taken with it."""
    return (
        update(inv)
        .where(inv.c.id == invocation_id, inv.c.lease_token == token)
        .values(status=Status.DEAD.value, error_type=UNREADABLE, error=error)
        .values(lease_token=None, lease_expires=None)
    )
