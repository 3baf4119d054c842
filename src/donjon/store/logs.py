"""What functions printed: the invocation log, written with each call's audit record."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, desc, select

from donjon.store.tables import invocation_logs

__all__ = ["InvocationLogStore"]


class InvocationLogStore:
    """Queries over `invocation_logs` (the audit writer appends to it, in its transaction)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def recent(self, function: str, n: int) -> list[dict[str, Any]]:
        """The last `n` entries of `function`, oldest first, without their row ids.

        Blocking: call it off the event loop. Each entry holds up to 64 KiB of output.
        """
        query = (
            select(invocation_logs)
            .where(invocation_logs.c.function == function)
            .order_by(desc(invocation_logs.c.id))
            .limit(n)
        )
        with self._engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        rows.reverse()
        for r in rows:
            r.pop("id", None)
        return rows
