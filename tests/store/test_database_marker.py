"""The data dir's record of its database (store/database_marker.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.store.database_marker import (
    MARKER_NAME,
    DatabaseMismatch,
    check_database,
    record_database,
)

PG = "postgresql+psycopg://***@db.internal:5432/donjon"


def test_a_data_dir_on_its_own_file_records_nothing_and_passes(tmp_path: Path) -> None:
    (tmp_path / "donjon.db").touch()
    check_database(tmp_path, f"sqlite:///{tmp_path / 'donjon.db'}", own_file=True)


def test_the_recorded_database_passes_and_any_other_is_refused(tmp_path: Path) -> None:
    record_database(tmp_path, PG)
    assert (tmp_path / MARKER_NAME).stat().st_mode & 0o777 == 0o600
    check_database(tmp_path, PG, own_file=False)
    with pytest.raises(DatabaseMismatch, match=r"keeps its state in postgresql\+psycopg"):
        check_database(tmp_path, f"sqlite:///{tmp_path / 'donjon.db'}", own_file=True)
    with pytest.raises(DatabaseMismatch) as refused:
        check_database(tmp_path, PG.replace("db.internal", "other"), own_file=False)
    assert "nothing was changed" in refused.value.message
    assert "DONJON_DATABASE_URL" in (refused.value.hint or "")


def test_a_data_dir_on_its_own_file_refuses_another_database(tmp_path: Path) -> None:
    (tmp_path / "donjon.db").touch()
    with pytest.raises(DatabaseMismatch, match="its own SQLite file"):
        check_database(tmp_path, PG, own_file=False)
    check_database(tmp_path / "fresh", PG, own_file=False)  # nothing there yet: init's


def test_a_link_in_place_of_the_record_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text(PG + "\n")
    (tmp_path / MARKER_NAME).symlink_to(target)
    with pytest.raises(DatabaseMismatch, match="cannot read"):
        check_database(tmp_path, PG, own_file=False)
