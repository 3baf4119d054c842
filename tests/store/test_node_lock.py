"""The data dir's node lock (store/node_lock.py), in one process and across an exec."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import Connection

from donjon.errors import Error
from donjon.store.node_lock import (
    LOCK_NAME,
    DatabaseLock,
    NodeBusy,
    hold_database_lock,
    hold_node_lock,
)


def test_a_held_dir_is_refused_naming_its_holder_until_released(tmp_path: Path) -> None:
    lock = hold_node_lock(tmp_path)
    assert lock.held
    with pytest.raises(NodeBusy) as refused:
        hold_node_lock(tmp_path)
    assert f"(pid {os.getpid()}, serving since " in refused.value.message
    assert "DONJON_DATA_DIR" in (refused.value.hint or "")
    lock.release()
    lock.release()  # twice is harmless
    assert not lock.held
    again = hold_node_lock(tmp_path)
    again.release()
    assert (tmp_path / LOCK_NAME).stat().st_mode & 0o777 == 0o600


def test_a_process_the_holder_starts_does_not_keep_the_lock(tmp_path: Path) -> None:
    lock = hold_node_lock(tmp_path)
    # close_fds=False: the child inherits every descriptor it may.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], close_fds=False)
    try:
        lock.release()
        # The child holds nothing: close-on-exec. Its kernel closes the descriptor a moment
        # after Popen returns (a vfork parent resumes before exec closes them): waited for,
        # bounded, the child still sleeping.
        deadline = time.monotonic() + 5
        while True:
            try:
                hold_node_lock(tmp_path).release()
                break
            except NodeBusy:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_an_unreadable_note_still_refuses_without_a_pid(tmp_path: Path) -> None:
    lock = hold_node_lock(tmp_path)
    try:
        for note in (b"not json", b"[1, 2]", b'{"pid": "1"}', b'{"since": "x"}'):
            (tmp_path / LOCK_NAME).write_bytes(note)
            with pytest.raises(NodeBusy) as refused:
                hold_node_lock(tmp_path)
            assert refused.value.message.endswith("another donjon process")
    finally:
        lock.release()


def test_a_symlink_in_place_of_the_lock_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("kept\n")
    (tmp_path / LOCK_NAME).symlink_to(target)
    with pytest.raises(Error, match="cannot open the node lock"):
        hold_node_lock(tmp_path)
    assert target.read_text() == "kept\n"


def test_a_missing_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Error, match="cannot open the node lock"):
        hold_node_lock(tmp_path / "absent")


def _hold_sqlite(data_dir: Path, database: Path) -> DatabaseLock | None:
    return hold_database_lock(f"sqlite:///{database}", database, data_dir, str(database))


def test_a_data_dirs_own_database_named_by_url_from_another_dir_is_refused(
    tmp_path: Path,
) -> None:
    """A copy of a data dir whose DONJON_DATABASE_URL names the first's donjon.db: the
    first's node lock holds that file (before, the copy served beside it)."""
    first, copy = tmp_path / "first", tmp_path / "copy"
    first.mkdir()
    copy.mkdir()
    lock = hold_node_lock(first)
    try:
        assert _hold_sqlite(first, first / "donjon.db") is None  # its own: held already
        with pytest.raises(NodeBusy, match="is already served"):
            _hold_sqlite(copy, first / "donjon.db")
    finally:
        lock.release()
    held = _hold_sqlite(copy, first / "donjon.db")  # once the first is stopped
    assert held is not None
    held.release()


def test_a_sqlite_file_is_held_whatever_path_names_it(tmp_path: Path) -> None:
    """A file in a data dir other than its donjon.db, and the same file by a symlink."""
    one, two, three = tmp_path / "one", tmp_path / "two", tmp_path / "three"
    for d in (one, two, three):
        d.mkdir()
    (three / "link.db").symlink_to(one / "state.db")
    held = _hold_sqlite(one, one / "state.db")
    assert held is not None
    try:
        with pytest.raises(NodeBusy):
            _hold_sqlite(two, one / "state.db")
        with pytest.raises(NodeBusy):
            _hold_sqlite(three, three / "link.db")
    finally:
        held.release()


class _FailingConnection:
    """A database connection whose driver fails in a way SQLAlchemy does not wrap."""

    def __init__(self) -> None:
        self.engine = self
        self.closed = 0

    def execute(self, *_: object) -> None:
        raise RuntimeError("a driver's own bug")

    def commit(self) -> None:  # pragma: no cover - execute fails first
        pass

    def close(self) -> None:
        self.closed += 1

    def dispose(self) -> None:
        pass


def test_a_watch_that_fails_otherwise_stops_the_node(tmp_path: Path) -> None:
    """The watch over a PostgreSQL lock caught SQLAlchemy's errors alone: any other ended
    its thread quietly, and the node served on with its lock no longer watched (a server
    restart then let a second node serve beside it). Now the node is told to stop."""
    lost: list[bool] = []
    connection = _FailingConnection()
    held = cast("Connection", connection)  # a stand-in: the driver's failure is the test
    lock = DatabaseLock(held, None, on_lost=lambda: lost.append(True), watch_s=0.01)
    deadline = time.monotonic() + 10
    while not lost and time.monotonic() < deadline:
        time.sleep(0.01)
    lock.release()
    assert lost == [True]
