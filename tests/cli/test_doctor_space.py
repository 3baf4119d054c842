"""What `donjon doctor` says of the room on the data dir's filesystem (controls/space.py)."""

from __future__ import annotations

from pathlib import Path

from donjon.controls.space import FULL_BELOW, DiskSpace, disk_space


def test_room_is_told_in_one_readable_unit_each() -> None:
    """Free and total each in the largest binary unit they fill, not KiB beside MiB."""
    room = DiskSpace(Path("/data"), 79_130_275_840, 270_551_941_120)
    assert room.describe() == "73.7 GiB free of 252.0 GiB on /data"
    assert not room.full


def test_a_filesystem_with_less_than_a_mib_free_is_full() -> None:
    """Under FULL_BELOW the line says FULL and what the node does about it."""
    room = DiskSpace(Path("/data"), FULL_BELOW - 1, 24 << 20)
    assert room.full
    assert room.describe().startswith("1024.0 KiB free of 24.0 MiB on /data (FULL: ")
    assert DiskSpace(Path("/d"), 12, 24 << 20).describe().startswith("12 B free")


def test_the_data_dirs_own_filesystem_is_read(tmp_path: Path) -> None:
    """statvfs of the data dir itself; None when there is no data dir to read."""
    room = disk_space(tmp_path)
    assert room is not None and 0 < room.free <= room.total
    assert disk_space(tmp_path / "missing") is None
