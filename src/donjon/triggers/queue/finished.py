"""Forgetting succeeded invocations (sql.py runs these): past the retention
(DONJON_LOG_RETENTION_DAYS), and past the newest DONJON_QUEUE_KEEP_SUCCEEDED of a function.

A succeeded invocation keeps its event and its result (up to 6 MiB, sealed) so that its
caller can read it (`GET /v1/invocations/{id}`); nothing else needs it. Kept by age
alone, a function called asynchronously at its default rate kept every one for 30
days, about its event's and result's size each. Dead and pending invocations are never
trimmed here: they are accepted events still to be run or acted on.
"""

from __future__ import annotations

from sqlalchemy import Engine, delete

from donjon.store.tables import invocations as inv
from donjon.store.trim import oldest_past
from donjon.triggers.queue.interface import Status

__all__ = ["DEFAULT_KEEP_SUCCEEDED", "prune_succeeded", "trim_succeeded"]

#: Succeeded invocations one function keeps, its newest (DONJON_QUEUE_KEEP_SUCCEEDED).
DEFAULT_KEEP_SUCCEEDED = 10_000

_SUCCEEDED = Status.SUCCEEDED.value


def prune_succeeded(engine: Engine, before: float) -> int:
    """Delete the succeeded invocations last updated before `before`; the count."""
    statement = delete(inv).where(inv.c.status == _SUCCEEDED, inv.c.updated_at < before)
    with engine.begin() as conn:
        return int(conn.execute(statement).rowcount)


def trim_succeeded(engine: Engine, function: str, keep: int, batch: int) -> int:
    """Delete up to `batch` of `function`'s oldest succeeded invocations past its newest
    `keep` (by when they ended); the count. Call it until it returns less than `batch`."""
    mine = (inv.c.function == function) & (inv.c.status == _SUCCEEDED)
    statement = oldest_past(inv, mine, inv.c.updated_at, keep, batch)
    with engine.begin() as conn:
        return int(conn.execute(statement).rowcount)
