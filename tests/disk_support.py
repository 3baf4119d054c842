"""Filling a filesystem for the full-disk attacks (tests/security/test_attack_disk_full.py,
tests/store/test_storage_full_postgres.py)."""

from __future__ import annotations

import errno
from pathlib import Path

__all__ = ["fill_with"]


def fill_with(filler: Path) -> Path:
    """Append to `filler` until its filesystem has no block left (ENOSPC); `filler`."""
    with open(filler, "ab", buffering=0) as f:
        for chunk in (1 << 20, 4096, 512):
            while True:
                try:
                    f.write(b"\0" * chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return filler
