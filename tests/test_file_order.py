"""tests/file_order.py: the order the workers get the test files in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from file_order import HERE, load_table, longest_first


class _Item:
    """What `longest_first` reads of a collected test: its file."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name


def test_files_go_longest_first_and_keep_their_tests_in_order() -> None:
    a, b, c = HERE / "a/test_a.py", HERE / "b/test_b.py", HERE / "test_c.py"
    items: list[Any] = [_Item(a, "a1"), _Item(a, "a2"), _Item(b, "b1"), _Item(c, "c1")]
    longest_first(items, {"a/test_a.py": 1.0, "b/test_b.py": 30.0, "other.py": 5.0})
    # c is not in the table: it counts as the median, 5.0
    assert [i.name for i in items] == ["b1", "c1", "a1", "a2"]


def test_an_unreadable_table_orders_nothing(tmp_path: Path) -> None:
    """A table with a merge's conflict markers, or none at all, leaves the collected
    order: it costs time, never a run."""
    broken = tmp_path / "durations.json"
    broken.write_text('<<<<<<< HEAD\n{"a.py": 1.0}\n=======\n')
    assert load_table(broken) == {}
    assert load_table(tmp_path / "none.json") == {}
    items: list[Any] = [_Item(HERE / "x.py", "x"), _Item(HERE / "y.py", "y")]
    longest_first(items, load_table(broken))
    assert [i.name for i in items] == ["x", "y"]
