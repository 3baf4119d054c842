"""The quotas table and the daily usage rows (store/quotas.py), on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from donjon.store import QuotaRecord, QuotaStore, connect, create_schema


def _store(tmp_path: Path) -> QuotaStore:
    engine = connect(f"sqlite:///{tmp_path / 'donjon.db'}")
    create_schema(engine)
    return QuotaStore(engine)


def test_put_replaces_and_remove_deletes(tmp_path: Path) -> None:
    """A quota is created once, replaced after, and removed once."""
    store = _store(tmp_path)
    assert store.put(QuotaRecord("key:abc", 3, None, 1.0, "key:admin"))
    assert not store.put(QuotaRecord("key:abc", None, 5000, 2.0, "key:admin"))
    assert store.all() == [QuotaRecord("key:abc", None, 5000, 2.0, "key:admin")]
    assert store.remove("key:abc")
    assert not store.remove("key:abc")
    assert store.all() == []


def test_usage_is_added_per_day_and_pruned(tmp_path: Path) -> None:
    """Increments add up per subject and day; days before the cut are deleted."""
    store = _store(tmp_path)
    store.add_usage("2026-01-01", {"function:f": (1, 10)})
    store.add_usage("2026-01-02", {"function:f": (2, 20), "key:k": (1, 0)})
    store.add_usage("2026-01-02", {"function:f": (3, 5)})
    assert store.usage("2026-01-02") == {"function:f": (5, 25), "key:k": (1, 0)}
    assert store.usage("2026-01-01") == {"function:f": (1, 10)}
    assert store.prune("2026-01-02") == 1
    assert store.usage("2026-01-01") == {}
    assert store.usage("2026-01-02") == {"function:f": (5, 25), "key:k": (1, 0)}
