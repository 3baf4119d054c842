"""Files written so that a power cut keeps them: the data dir's keys and markers."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["sync_directory"]


def sync_directory(directory: Path) -> None:
    """Make the entries made, renamed or removed in `directory` durable (a file's own
    fsync does not keep its name: a power cut could undo a rename or a creation)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
