"""Which database a data dir keeps its state in, recorded by `donjon init`.

A node's state is split between its data dir (master key, audit signing key, the
checkpoint file, TLS) and its database. A data dir initialised on a database server
(DONJON_DATABASE_URL) and later given one command without that setting (or with
another URL) made a second, empty node on the data dir's own SQLite file: a new admin
key, and a checkpoint of that new log in the checkpoint file, after which the real node
refused to start until the file was repaired by hand (helper-146's review). So `init`
writes the database's URL, its password masked, to `DATA_DIR/database`, and `init`,
`serve` and `up` refuse, before they make anything, a data dir whose recorded database is
not the one they were given, or one initialised on its own SQLite file that they were
told to keep elsewhere. A data dir on its own SQLite file records nothing (as before).
"""

from __future__ import annotations

import os
from pathlib import Path

from donjon.config_urls import DATA_DIR_DATABASE
from donjon.errors import Error

__all__ = ["MARKER_NAME", "DatabaseMismatch", "check_database", "record_database"]

#: The file, in the data dir, that names its database (masked: no password).
MARKER_NAME = "database"
_MAX_BYTES = 4096


class DatabaseMismatch(Error):
    """The command was given another database than the one its data dir keeps its state in."""

    title = "Wrong database"


def record_database(data_dir: Path, shown: str) -> None:
    """Record `shown` (the database's URL, password masked) as `data_dir`'s database."""
    path = data_dir / MARKER_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(shown + "\n")


def check_database(data_dir: Path, shown: str, *, own_file: bool) -> None:
    """`DatabaseMismatch` unless `data_dir` keeps its state in the database `shown` names.

    `own_file`: the database given is the data dir's own SQLite file (no
    DONJON_DATABASE_URL)."""
    recorded = _recorded(data_dir / MARKER_NAME)
    if recorded is None:
        own = data_dir / DATA_DIR_DATABASE
        if not own_file and own.exists():
            raise DatabaseMismatch(
                f"{data_dir} keeps its state in its own SQLite file ({own}), not in {shown}; "
                "nothing was changed",
                hint="unset DONJON_DATABASE_URL for this data dir",
            )
        return
    if recorded != shown:
        raise DatabaseMismatch(
            f"{data_dir} keeps its state in {recorded}, not in {shown}; nothing was changed",
            hint="set DONJON_DATABASE_URL to that database (with its password) for every "
            f"donjon command on this data dir; to move the node's state, edit "
            f"{data_dir / MARKER_NAME}",
        )


def _recorded(path: Path) -> str | None:
    """The database `path` names; None if there is no such file (never followed as a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise DatabaseMismatch(
            f"cannot read {path}: {e.strerror}", hint="it must be a file this user may read"
        ) from e
    with os.fdopen(fd, "rb") as marker:
        return marker.read(_MAX_BYTES).decode("utf-8", "replace").strip()
