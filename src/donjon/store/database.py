"""Opening the database: engine, pragmas, schema."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from donjon.errors import Error
from donjon.store.tables import metadata

__all__ = ["Engine", "StoreError", "connect", "create_schema"]


class StoreError(Error):
    """The database could not be opened, or failed an operation."""

    title = "Storage error"


class StoreConflict(StoreError):
    """The database refused a write that a concurrent one made impossible."""

    title = "Storage conflict"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def connect(url: str) -> Engine:
    """An engine for `url`; SQLite files get WAL and full durability."""
    try:
        engine = create_engine(url, future=True)
    except (SQLAlchemyError, ValueError) as e:
        raise StoreError(f"cannot open database {url!r}: {e}") from e
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def create_schema(engine: Engine) -> None:
    """Create every table that does not exist yet."""
    try:
        metadata.create_all(engine)
    except SQLAlchemyError as e:
        raise StoreError(f"cannot create the schema: {e}") from e
