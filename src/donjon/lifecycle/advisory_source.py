"""Where the node's advisory data is, whether it changed, and fetching it when told to.

The data is what the deploy scan reads (`Settings.advisories_path`): DONJON_ADVISORIES,
else ``DATA_DIR/advisories`` once it holds something (`donjon scan --update-db` writes
it there). Looking for a change is cheap: `stat_identity` is the size, modification time
and inode of each file the data is read from (no file is read). Only when that changes
is the content digested (`content_digest`, SHA-256 over every record file, as the
advisory cache keys it): data touched but not changed is no change.

With DONJON_ADVISORY_SOURCE_URL set, `refresh_due` says when the export in
``DATA_DIR/advisories`` is older than DONJON_ADVISORY_REFRESH_S (its modification time,
so a restart does not fetch again), and `refresh` fetches it the way
`donjon scan --update-db` does (checked, then swapped in atomically).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from donjon.scan.deps.advisory_cache import source_digest
from donjon.scan.deps.osv_update import (
    DOWNLOAD_DEADLINE_S,
    EXPORT_NAME,
    advisories_dir,
    update_advisory_db,
)

__all__ = ["content_digest", "refresh", "refresh_due", "stat_identity"]

_SUFFIXES = (".zip", ".json", ".yaml", ".yml")
#: As the loader: records this large are skipped.
_MAX_RECORD_BYTES = 8 * 1024 * 1024


def stat_identity(path: Path | None) -> str:
    """The size, mtime and inode of every file the data is read from ("" for no data)."""
    if path is None:
        return ""
    try:
        if path.is_file():
            return _line(path.name, path.stat())
        parts: list[str] = []
        for top, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                # Not a download in progress (`.download-*.zip`): its swap-in is the change.
                if name.endswith(_SUFFIXES) and not name.startswith("."):
                    full = Path(top) / name
                    if not full.is_symlink():
                        parts.append(_line(str(full.relative_to(path)), full.stat()))
        return "\n".join(parts)
    except OSError:
        return ""  # gone, or being replaced: looked at again next time


def _line(name: str, st: os.stat_result) -> str:
    return f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"


def content_digest(path: Path) -> str:
    """SHA-256 of the data's content (what the advisory cache is keyed by)."""
    return source_digest(path, _MAX_RECORD_BYTES)


def refresh_due(data_dir: Path, refresh_s: float, now: float | None = None) -> bool:
    """Is the fetched export missing, or older than `refresh_s`?"""
    export = advisories_dir(data_dir) / EXPORT_NAME
    try:
        age = (time.time() if now is None else now) - export.stat().st_mtime
    except OSError:
        return True
    return age >= refresh_s


def refresh(data_dir: Path, url: str, deadline_s: float = DOWNLOAD_DEADLINE_S) -> Path:
    """Fetch the export at `url` into ``DATA_DIR/advisories`` (`ScanError` if it fails,
    or takes longer than `deadline_s` in all)."""
    return update_advisory_db(data_dir, url=url, deadline_s=deadline_s)
