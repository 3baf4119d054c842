"""Function versions: stored in one transaction that rolls back on any failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.store import FunctionRecord, FunctionStore, connect, create_schema
from donjon.store.database import StoreError


def _store(tmp_path: Path) -> FunctionStore:
    engine = connect(f"sqlite:///{tmp_path / 'donjon.db'}")
    create_schema(engine)
    return FunctionStore(engine)


def test_check_sees_the_stored_row(tmp_path: Path) -> None:
    """The check is given the row as the database holds it, and the version becomes current."""
    store = _store(tmp_path)
    seen: list[FunctionRecord] = []
    record = store.add_version("f", 1, "0" * 64, '{"name": "f"}', "tester", check=seen.append)
    assert seen == [record]
    assert [r.version for r in store.current()] == [1]


def test_a_failing_check_stores_nothing(tmp_path: Path) -> None:
    """When the check raises, the version and the current pointer are rolled back."""
    store = _store(tmp_path)
    store.add_version("f", 1, "0" * 64, "{}", "tester")

    def refuse(_: FunctionRecord) -> None:
        raise StoreError("no")

    with pytest.raises(StoreError):
        store.add_version("f", 2, "1" * 64, "{}", "tester", check=refuse)
    assert [(r.version, r.digest) for r in store.current()] == [(1, "0" * 64)]
    assert store.next_version("f") == 2
