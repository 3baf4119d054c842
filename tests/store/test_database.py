"""The node's database engine (store/database.py)."""

from __future__ import annotations

import errno
import sqlite3
import traceback
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from donjon.store import connect, storage_full


def test_a_failed_statement_names_no_bound_value(tmp_path: Path) -> None:
    """A statement that fails keeps its SQL in the error but not its bound values: an
    error logged with its traceback (log.exception, with the error's cause) would otherwise
    copy into the node's log what the row held (an event's routing fields, a function's
    error message)."""
    value = "-".join(("VALUE", "jane.doe@example.com"))  # not a literal of a traced line
    engine = connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (v TEXT UNIQUE)"))
        conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})
    with pytest.raises(IntegrityError) as failed, engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})
    logged = "".join(traceback.format_exception(failed.value))
    assert "INSERT INTO t" in logged
    assert value not in logged


def test_a_write_with_no_room_is_told_apart(tmp_path: Path) -> None:
    """SQLite's SQLITE_FULL (a database at its page limit, as a full disk) and ENOSPC are
    storage_full, through SQLAlchemy's wrapping; a constraint failure is not."""
    engine = connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (v TEXT UNIQUE)"))
        conn.execute(text("INSERT INTO t VALUES ('x')"))
    with pytest.raises(IntegrityError) as clash, engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES ('x')"))
    assert not storage_full(clash.value)
    with engine.connect() as conn:
        pages = conn.execute(text("PRAGMA page_count")).scalar_one()
        conn.execute(text(f"PRAGMA max_page_count = {pages}"))
        with pytest.raises(OperationalError) as full:
            conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": "y" * 100_000})
    assert storage_full(full.value)
    assert storage_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not storage_full(OSError(errno.EACCES, "Permission denied"))


def test_an_error_of_the_sqlite_module_itself_is_not_storage_full(tmp_path: Path) -> None:
    """An error the sqlite3 module raises without the SQLite library (wrong bindings, a
    closed connection) has no error code: storage_full says False instead of raising."""
    engine = connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with pytest.raises(ProgrammingError) as bindings, engine.connect() as conn:
        conn.exec_driver_sql("SELECT ?", (1, 2))
    assert not storage_full(bindings.value)
    assert isinstance(bindings.value.orig, sqlite3.ProgrammingError)
    assert not storage_full(bindings.value.orig)
