"""What functions printed: the invocation log, written with each call's audit record.

Outputs are sealed at rest (vault/logseal.py) and opened here, in the node, for
`donjon logs`; rows written before sealing (plaintext `output`, no `sealed`) are
returned as they are until retention purges them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, delete, desc, false, or_, select

from donjon.store.functions import VersionRuns
from donjon.store.tables import invocation_logs
from donjon.store.trim import oldest_past
from donjon.vault.errors import VaultError
from donjon.vault.logseal import LogSealer, SealedLog

__all__ = ["InvocationLogStore"]

_SEALED_COLUMNS = ("sealed", "wrapped_key", "kek_id")


class InvocationLogStore:
    """Queries over `invocation_logs` (the audit writer appends to it, in its transaction)."""

    def __init__(self, engine: Engine, sealer: LogSealer | None = None) -> None:
        self._engine = engine
        self._sealer = sealer

    def recent(
        self,
        function: str,
        n: int,
        *,
        since: float | None = None,
        after: int | None = None,
        request_id: str | None = None,
        versions: VersionRuns | None = None,
    ) -> list[dict[str, Any]]:
        """Entries of `function`, oldest first, opened; each row's id is its `cursor`.

        The last `n` of those at or after `since` (epoch seconds), or with
        `after` (a cursor) the first `n` newer than it: what `donjon logs -f`
        polls for. `request_id` picks one call's entry. `versions`: only the calls of
        those runs of versions (None: every version).
        Blocking: call it off the event loop. Each entry holds up to 64 KiB of output.
        """
        c = invocation_logs.c
        query = select(invocation_logs).where(c.function == function)
        if versions is not None:
            query = query.where(_in_runs(c.version, versions))
        if since is not None:
            query = query.where(c.ts >= since)
        if request_id is not None:
            query = query.where(c.request_id == request_id)
        if after is not None:
            query = query.where(c.id > after).order_by(c.id).limit(n)
        else:
            query = query.order_by(desc(c.id)).limit(n)
        with self._engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        if after is None:
            rows.reverse()
        for r in rows:
            r["cursor"] = r.pop("id", None)
            sealed, wrapped, kek_id = (r.pop(col, None) for col in _SEALED_COLUMNS)
            if sealed is not None:
                r["output"] = self._open(r, sealed, wrapped, kek_id)
        return rows

    def _open(self, r: dict[str, Any], sealed: Any, wrapped: Any, kek_id: Any) -> str:
        """One row's output. A row that does not open (edited, moved from another row, or
        sealed under another master key) says so in its own entry: it must not take
        every other call's log with it."""
        if self._sealer is None:
            return "(sealed)"
        try:
            return self._sealer.open(
                r["function"],
                r["request_id"],
                SealedLog(bytes(sealed), bytes(wrapped or b""), str(kek_id)),
            )
        except (VaultError, TypeError, UnicodeDecodeError) as e:
            reason = e.message if isinstance(e, VaultError) else "its columns were altered"
            return f"[donjon] this call's log does not open: {reason}\n"

    def purge(self, before: float, batch: int = 1000) -> int:
        """Delete up to `batch` entries older than `before` (epoch seconds); the count deleted.

        Blocking. Bounded so one call never holds the write lock long; call it until
        it returns less than `batch`.
        """
        ids = (
            select(invocation_logs.c.id)
            .where(invocation_logs.c.ts < before)
            .order_by(invocation_logs.c.id)
            .limit(batch)
            .scalar_subquery()
        )
        with self._engine.begin() as conn:
            result = conn.execute(delete(invocation_logs).where(invocation_logs.c.id.in_(ids)))
        return int(result.rowcount or 0)

    def trim(self, function: str, keep: int, batch: int = 1000) -> int:
        """Delete up to `batch` of `function`'s oldest entries past its newest `keep`; the
        count deleted. Blocking; call it until it returns less than `batch`."""
        c = invocation_logs.c
        statement = oldest_past(invocation_logs, c.function == function, c.id, keep, batch)
        with self._engine.begin() as conn:
            result = conn.execute(statement)
        return int(result.rowcount or 0)


def _in_runs(version: Any, runs: VersionRuns) -> ColumnElement[bool]:
    """`version` within one of `runs` (none: false)."""
    if not runs:
        return false()
    return or_(
        *(
            version >= first if last is None else and_(version >= first, version <= last)
            for first, last in runs
        )
    )
