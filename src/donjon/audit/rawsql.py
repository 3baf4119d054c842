"""The audit writer's statements, compiled once, run on a bare DB-API connection.

One transaction per batch: the records, their invocation logs and the grant
uses (`insert`, once per prepared chunk of records), then the signed head and
(by cadence) a checkpoint, and COMMIT (`finish`). SQLAlchemy
compiles each statement once for the engine's dialect (SQLite's qmark or
psycopg's named style); each batch then goes straight to the driver's
`executemany`, without a Connection, a Result or per-row parameter processing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, bindparam, insert, text
from sqlalchemy.sql import ClauseElement

from donjon.audit.usage import UPSERT_USE
from donjon.store.tables import audit_checkpoints, audit_log, invocation_logs

__all__ = ["LOG_COLUMNS", "RawStatements"]

LOG_COLUMNS = (
    "function",
    "version",
    "request_id",
    "ts",
    "outcome",
    "output",
    "sealed",
    "wrapped_key",
    "kek_id",
    "duration_ms",
    "memory_kb",
)
_RECORD_COLUMNS = ("seq", "record", "hash")
_USE_COLUMNS = ("function", "kind", "name", "seq", "ts")
_HEAD_COLUMNS = ("seq", "hash", "mac", "ts_ms")
_CHECKPOINT_COLUMNS = ("size", "root", "ts", "note")


class _Statement:
    """One statement in the driver's SQL, and how to lay out a row of its parameters."""

    def __init__(self, stmt: ClauseElement, engine: Engine, columns: Sequence[str]) -> None:
        dialect = engine.dialect
        compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        self.sql = str(compiled)
        self.columns = tuple(columns)
        order = tuple(getattr(compiled, "positiontup", None) or ()) if dialect.positional else None
        # Rows come as tuples in `columns` order: reorder for a positional driver
        # only if its placeholders run in another order; name them for the others.
        self.order = None if order is None else tuple(self.columns.index(n) for n in order)

    def rows(self, rows: list[tuple[Any, ...]]) -> Sequence[Any]:
        order = self.order
        if order is None:
            return [dict(zip(self.columns, r, strict=True)) for r in rows]
        if order == tuple(range(len(self.columns))):
            return rows
        return [tuple(r[i] for i in order) for r in rows]


class RawStatements:
    """The writer's statements for one engine."""

    def __init__(self, engine: Engine) -> None:
        def params(names: Sequence[str]) -> dict[str, Any]:
            return {n: bindparam(n) for n in names}

        self.record = _Statement(
            insert(audit_log).values(**params(_RECORD_COLUMNS)), engine, _RECORD_COLUMNS
        )
        self.log = _Statement(
            insert(invocation_logs).values(**params(LOG_COLUMNS)), engine, LOG_COLUMNS
        )
        self.use = _Statement(UPSERT_USE, engine, _USE_COLUMNS)
        self.head = _Statement(
            text(
                "UPDATE audit_head SET seq = :seq, hash = :hash, mac = :mac, ts_ms = :ts_ms"
                " WHERE id = 1"
            ),
            engine,
            _HEAD_COLUMNS,
        )
        self.checkpoint = _Statement(
            insert(audit_checkpoints).values(**params(_CHECKPOINT_COLUMNS)),
            engine,
            _CHECKPOINT_COLUMNS,
        )

    def insert(
        self,
        raw: Any,
        records: list[tuple[Any, ...]],
        logs: list[tuple[Any, ...]],
        uses: list[tuple[Any, ...]],
    ) -> None:
        """Insert rows on DB-API connection `raw` (its transaction stays open)."""
        cur = raw.cursor()
        try:
            cur.executemany(self.record.sql, self.record.rows(records))
            if logs:
                cur.executemany(self.log.sql, self.log.rows(logs))
            if uses:
                cur.executemany(self.use.sql, self.use.rows(uses))
        finally:
            cur.close()

    def finish(self, raw: Any, head: tuple[Any, ...], checkpoint: Mapping[str, Any] | None) -> None:
        """Write the head (and a checkpoint) on `raw` and commit what it inserted."""
        cur = raw.cursor()
        try:
            cur.execute(self.head.sql, self.head.rows([head])[0])
            if checkpoint is not None:
                row = tuple(checkpoint[c] for c in _CHECKPOINT_COLUMNS)
                cur.execute(self.checkpoint.sql, self.checkpoint.rows([row])[0])
        finally:
            cur.close()
        raw.commit()
