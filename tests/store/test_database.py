"""The node's database engine (store/database.py)."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from donjon.store import connect


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
