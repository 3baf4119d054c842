"""The room left on the data dir's filesystem: what `donjon doctor` says of a full disk.

Informational, not a control: a full disk is a condition the node meets and recovers
from by itself (calls and admin changes are refused with a 503 while nothing can be
written, docs/security.md, "A full disk"), not a protection the host lacks, so it
never stops `donjon serve` from starting nor changes doctor's exit status.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FULL_BELOW", "DiskSpace", "disk_space"]

#: Free bytes under which the data dir's filesystem is called full: less than a few of
#: SQLite's WAL frames and one bundle; writes fail there or soon.
FULL_BELOW = 1 << 20


@dataclass(frozen=True)
class DiskSpace:
    """The data dir's filesystem: bytes free to the node and in all."""

    path: Path
    free: int
    total: int

    @property
    def full(self) -> bool:
        return self.free < FULL_BELOW

    def room(self) -> str:
        """``73.7 GiB free of 252.0 GiB on /var/lib/donjon``."""
        return f"{_readable(self.free)} free of {_readable(self.total)} on {self.path}"

    def describe(self) -> str:
        line = self.room()
        if self.full:
            line += (
                " (FULL: calls and admin changes are refused with 503 until space is freed;"
                " the node recovers by itself)"
            )
        return line

    def as_json(self) -> dict[str, object]:
        return {"path": str(self.path), "free": self.free, "total": self.total, "full": self.full}


def _readable(size: int) -> str:
    """Bytes in the largest binary unit they fill: ``73.7 GiB``, ``512.0 KiB``, ``12 B``."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.1f} {unit}"
    return f"{size} B"


def disk_space(data_dir: Path) -> DiskSpace | None:
    """The room on `data_dir`'s filesystem; None if it cannot be read (no data dir)."""
    try:
        st = os.statvfs(data_dir)
    except OSError:
        return None
    return DiskSpace(data_dir, st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)
