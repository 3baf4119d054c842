"""The audit writer's statements, compiled once, run on a bare DB-API connection.

One transaction per batch: the records, their invocation logs and the grant
uses (`insert`, once per prepared chunk of records), then the signed head and
(by cadence) a checkpoint, and COMMIT (`finish`). SQLAlchemy
compiles each statement once for the engine's dialect (SQLite's qmark or
psycopg's named style); each batch then goes straight to the driver, without a
Connection, a Result or per-row parameter processing. On SQLite the records go
in multi-row INSERTs of up to 256 rows (one statement per power of two, compiled
when first used): the driver binds a block in one call and SQLite inserts it in
one step, with the interpreter's lock released, instead of one step per row
(audit/rows.py lays the parameters out flat for it). Other drivers get
`executemany`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, bindparam, insert, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql import ClauseElement

from donjon.audit.errors import AuditError
from donjon.audit.rows import WIDTH, row_tuples
from donjon.audit.usage import UPSERT_USE
from donjon.store.tables import audit_checkpoints, audit_log, invocation_logs

__all__ = ["LOG_COLUMNS", "RawStatements"]

log_ = logging.getLogger("donjon.audit.writer")

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
#: The most rows in one multi-row INSERT (3 parameters each: below SQLite's oldest
#: limit of 999 variables a statement).
_BLOCK = 256


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


class _RecordBlocks:
    """audit_log rows in multi-row INSERTs (SQLite): a block of 256, then powers of two.

    SQLAlchemy compiles the one-row and the two-row INSERT (dialect-correct SQL); the
    n-row one is the one-row statement with its VALUES tuple repeated, which is what
    SQLAlchemy writes for two rows (checked here: otherwise every size is compiled by
    SQLAlchemy on first use). Compiling the 256-row statement took SQLAlchemy 18 ms
    and all nine sizes 34 ms (docs/performance.md, the twenty-third round), paid by
    the first large groups after a writer started."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sql: dict[int, str] = {}
        one, two = self._compile(1), self._compile(2)
        head, values = _split_values(one)
        #: The one-row statement before its VALUES tuple, and that tuple; None: SQLAlchemy
        #: does not write the two-row statement as that tuple repeated (compile each).
        self._parts = (head, values) if two == f"{head}{values}, {values}" else None
        self._sql[1], self._sql[2] = one, two

    def _compile(self, rows: int) -> str:
        """SQLAlchemy's INSERT of `rows` rows, parameters seq, record, hash of each row."""
        names = [f"{c}_{i}" for i in range(rows) for c in _RECORD_COLUMNS]
        values: list[dict[str, Any]] = [
            {c: bindparam(f"{c}_{i}") for c in _RECORD_COLUMNS} for i in range(rows)
        ]
        stmt = _Statement(insert(audit_log).values(values), self._engine, names)
        if stmt.order != tuple(range(len(names))):  # not in row order: a Donjon bug
            raise AuditError(
                "the multi-row audit INSERT binds its parameters out of row order",
                hint="a Donjon bug: report it with the database's dialect",
            )
        return stmt.sql

    def sql(self, rows: int) -> str:
        """The INSERT of `rows` rows whose parameters are seq, record, hash of each row
        in turn (made on first use)."""
        sql = self._sql.get(rows)
        if sql is None:
            if self._parts is None:
                sql = self._compile(rows)
            else:
                head, values = self._parts
                sql = head + ", ".join([values] * rows)
            self._sql[rows] = sql
        return sql

    def insert(self, cur: Any, params: list[Any]) -> None:
        rows, at = len(params) // WIDTH, 0
        block = _BLOCK
        while at < rows:
            while block > rows - at:
                block >>= 1
            sql = self.sql(block)
            end = at + block
            cur.execute(sql, params[at * WIDTH : end * WIDTH])
            at = end


def _split_values(sql: str) -> tuple[str, str]:
    """A one-row INSERT as what precedes its VALUES tuple and the tuple."""
    at = sql.rfind(" VALUES (")
    if at < 0 or not sql.endswith(")"):
        return sql, ""
    return sql[: at + len(" VALUES ")], sql[at + len(" VALUES ") :]


def _log_insert(engine: Engine, values: dict[str, Any]) -> ClauseElement:
    """The invocation log's INSERT: a row whose request id is already logged is dropped,
    not an error. Two calls given one id (64 random bits each: rare, not impossible)
    must not fail the transaction, which holds every record committed with theirs (their
    callers would get errors for calls that ran, their security events unwritten); the
    second call's record is kept, and it names the id."""
    if engine.dialect.name == "sqlite":
        return (
            sqlite_insert(invocation_logs)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["request_id"])
        )
    if engine.dialect.name == "postgresql":
        # Imported here: a node on SQLite (and its audit writer) never loads the dialect.
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return (
            pg_insert(invocation_logs)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["request_id"])
        )
    raise AuditError(
        f"the audit log does not run on {engine.dialect.name}",
        hint="use SQLite or PostgreSQL (DONJON_DATABASE_URL)",
    )


class RawStatements:
    """The writer's statements for one engine."""

    def __init__(self, engine: Engine) -> None:
        #: Multi-row INSERTs on SQLite; None: executemany.
        self.blocks = (
            _RecordBlocks(engine)
            if engine.dialect.name == "sqlite" and engine.dialect.positional
            else None
        )

        def params(names: Sequence[str]) -> dict[str, Any]:
            return {n: bindparam(n) for n in names}

        self.record = _Statement(
            insert(audit_log).values(**params(_RECORD_COLUMNS)), engine, _RECORD_COLUMNS
        )
        self.log = _Statement(_log_insert(engine, params(LOG_COLUMNS)), engine, LOG_COLUMNS)
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
        records: list[Any],
        logs: list[tuple[Any, ...]],
        uses: list[tuple[Any, ...]],
    ) -> None:
        """Insert rows on DB-API connection `raw` (its transaction stays open); `records`
        holds seq, record, hash of each record, flat (audit/rows.py)."""
        cur = raw.cursor()
        try:
            if self.blocks is not None:
                self.blocks.insert(cur, records)
            else:
                cur.executemany(self.record.sql, self.record.rows(row_tuples(records)))
            if logs:
                cur.executemany(self.log.sql, self.log.rows(logs))
                if 0 <= cur.rowcount < len(logs):  # (-1: the driver does not say)
                    log_.warning(
                        "audit: %d invocation log(s) not stored: their request id was"
                        " logged already (each call's audit record is kept)",
                        len(logs) - cur.rowcount,
                    )
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
