"""Opening the database: engine, pragmas, schema."""

from __future__ import annotations

import errno
import sqlite3
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, literal, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from donjon.config_urls import masked_url
from donjon.errors import Error
from donjon.store.tables import api_keys, audit_log, metadata

__all__ = [
    "Engine",
    "StorageFull",
    "StoreError",
    "connect",
    "create_schema",
    "holds_a_node",
    "storage_full",
]


class StoreError(Error):
    """The database could not be opened, or failed an operation."""

    title = "Storage error"


class StoreConflict(StoreError):
    """The database refused a write that a concurrent one made impossible."""

    title = "Storage conflict"


class StorageFull(StoreError):
    """The filesystem (or the database server's disk) has no room for a write: nothing of
    the write was kept, and the same write succeeds once space is freed."""

    title = "Storage full"
    #: Seconds a client waits before it sends again (a 503's Retry-After).
    retry_after_s = 5

    def __init__(self, what: str = "the change") -> None:
        super().__init__(
            f"the node's storage is full: {what} could not be written, so nothing was changed",
            hint="free space on the filesystem of the node's data dir (or its database); "
            "the node recovers by itself, without a restart",
        )


#: SQLSTATE disk_full (PostgreSQL).
_PG_DISK_FULL = "53100"


def storage_full(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, says the storage had no room:
    SQLite's SQLITE_FULL, PostgreSQL's disk_full, or ENOSPC/EDQUOT from a file write."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, StorageFull):
            return True
        # Only errors of the SQLite library carry a code; the module's own (wrong
        # bindings, a closed connection) have no such attribute.
        code = getattr(e, "sqlite_errorcode", None)
        if (
            isinstance(e, sqlite3.Error)
            and isinstance(code, int)
            and code & 0xFF == sqlite3.SQLITE_FULL
        ):
            return True
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if (
            getattr(e, "sqlstate", None) == _PG_DISK_FULL
            or getattr(e, "pgcode", None) == _PG_DISK_FULL
        ):
            return True
        orig = getattr(e, "orig", None)  # SQLAlchemy's DBAPIError: the driver's error
        todo.extend([e.__cause__, e.__context__, orig if isinstance(orig, BaseException) else None])
    return False


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def connect(url: str, *, pooled: bool = True) -> Engine:
    """An engine for `url`; SQLite files get WAL and full durability. A statement that
    fails keeps its SQL in the error, never its bound values (`hide_parameters`): an error
    logged with its cause (`log.exception`) would copy what the row held into the node's
    log (a queued event's routing fields, a function's error message, a key's digest).
    `pooled=False`: each connection is opened for its user and closed with it (a lock held
    by a connection of its own, node_lock.py)."""
    try:
        pool = {} if pooled else {"poolclass": NullPool}
        engine = create_engine(url, future=True, hide_parameters=True, **pool)
    except (SQLAlchemyError, ValueError) as e:
        # Never the password of DONJON_DATABASE_URL, here nor in what SQLAlchemy said.
        shown = masked_url(url)
        raise StoreError(f"cannot open database {shown!r}: {str(e).replace(url, shown)}") from e
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def holds_a_node(engine: Engine) -> bool:
    """Whether the database already holds a node's state (an API key or an audit record):
    what `donjon init` of another data dir must not write over."""
    try:
        inspector = inspect(engine)
        with engine.connect() as conn:
            for table in (api_keys, audit_log):
                if (
                    inspector.has_table(table.name)
                    and conn.execute(select(literal(1)).select_from(table).limit(1)).first()
                ):
                    return True
    except SQLAlchemyError as e:
        raise StoreError(f"cannot read the database: {e}") from e
    return False


def create_schema(engine: Engine) -> None:
    """Create every table that does not exist yet, and add the columns a table lacks.

    A data dir made by an older version opens as it is: a nullable column added
    to a table since then is added (`ALTER TABLE ... ADD COLUMN`), once, at start.
    """
    try:
        metadata.create_all(engine)
        _add_missing_columns(engine)
    except SQLAlchemyError as e:
        raise StoreError(f"cannot create the schema: {e}") from e


def _add_missing_columns(engine: Engine) -> None:
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                if not column.nullable:
                    raise StoreError(
                        f"table {table.name} lacks the required column {column.name}",
                        hint="this data dir was made by an incompatible version",
                    )
                kind = column.type.compile(dialect=engine.dialect)
                # Names and types come from our own schema, never from input.
                conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
                if (table.name, column.name) == ("advisory_findings", "reported_at"):
                    # Findings opened before the outbox had their records written then.
                    conn.execute(text("UPDATE advisory_findings SET reported_at = found_at"))
        # Functions deployed before owners were recorded: owned by their first deployer.
        conn.execute(
            text(
                "UPDATE functions SET owner = (SELECT v.created_by FROM function_versions v"
                " WHERE v.name = functions.name ORDER BY v.version LIMIT 1)"
                " WHERE owner IS NULL"
            )
        )
