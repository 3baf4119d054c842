"""The data dir is this user's alone, or the node neither initialises nor serves it.

Init reuses what it finds (a master key, a TLS key pair, a signing key) so that
a second init changes nothing. Found in a dir someone else could write, those
could be theirs: a TLS key pair planted in a shared /tmp dir before `donjon
init` is served by the node, and the CLI trusts its certificate, so the one
who planted it reads every API key sent to the node. So before anything is
written or opened: the dir, and each entry in it and in `tls/`, must belong to
this user, and a dir others may write must still be empty. And in a dir others
may enter, the node's keys and database are this user's to read alone: a tree
restored with loose modes (the dir 755, the TLS key 644) would let any local user
take the TLS key and pass for the node to the CLI, which trusts its certificate.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from donjon.errors import Error

__all__ = ["DataDirError", "check_data_dir"]

#: Subdirectories whose entries init reuses as found (the node's TLS key pair).
_CHECKED_SUBDIRS = ("tls",)
#: What no one but the node may read (the master key and the audit signing key are also
#: refused where they are loaded).
_PRIVATE = (
    "master.key",
    "audit-signing.key",
    "sandbox-uid.key",
    "donjon.db",
    "donjon.db-wal",
    "donjon.db-shm",
    "tls/key.pem",
)


class DataDirError(Error):
    """The data dir, or something in it, could have been written by another user."""

    title = "Unsafe data dir"


def check_data_dir(data_dir: Path) -> None:
    """Refuse `data_dir` unless this user owns it and all in it (a missing dir is fine:
    init makes it 0700; a link to it is fine if root's or this user's); a dir group or
    others may write must be empty; the node's keys and database are its alone to read."""
    try:
        link = os.lstat(data_dir)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (0, os.geteuid()):
        raise DataDirError(
            f"the data dir {data_dir} is a link owned by uid {link.st_uid}, who could point "
            "it elsewhere at any time; nothing was changed",
            hint="set DONJON_DATA_DIR to the dir itself, or to a link of this user's",
        )
    try:
        st = data_dir.stat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise DataDirError(
            f"the data dir {data_dir} is not a directory", hint="set DONJON_DATA_DIR to a directory"
        )
    _check_owner(data_dir, st)
    entries = _owned_entries(data_dir)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and entries:
        raise DataDirError(
            f"the data dir {data_dir} is writable by others (mode "
            f"{stat.S_IMODE(st.st_mode):o}) and not empty: what is in it may not be yours; "
            "nothing was changed",
            hint=f"check what is in it, then `chmod 700 {data_dir}`; or use a new, empty dir",
        )
    for name in _CHECKED_SUBDIRS:
        sub = data_dir / name
        if name in entries and stat.S_ISDIR(entries[name]):
            _owned_entries(sub)
    if st.st_mode & (stat.S_IXGRP | stat.S_IXOTH):
        # Only a dir others may enter exposes what is in it: in a 0700 one, a file's own
        # mode gives no one else anything (SQLite makes its files 0644 as an init runs,
        # and a second init's check then refused the first one's database: ci54c).
        for name in _PRIVATE:
            _check_private(data_dir / name, data_dir)


def _check_private(path: Path, data_dir: Path) -> None:
    """Refuse `path` (a link: the file it names) if group or others may read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DataDirError(
            f"{path} is readable by others than this user (mode {stat.S_IMODE(mode):o}): "
            "the node keeps it to itself; nothing was changed",
            hint=f"chmod 600 {path} (and chmod 700 {data_dir}), then check who could have "
            "read it: a key others read is a key to replace",
        )


def _owned_entries(directory: Path) -> dict[str, int]:
    """The modes of the entries of `directory` (not followed), each checked to be ours."""
    found: dict[str, int] = {}
    with os.scandir(directory) as it:
        for entry in it:
            st = entry.stat(follow_symlinks=False)
            _check_owner(Path(entry.path), st)
            found[entry.name] = st.st_mode
    return found


def _check_owner(path: Path, st: os.stat_result) -> None:
    uid = os.geteuid()
    if st.st_uid != uid:
        raise DataDirError(
            f"{path} is owned by uid {st.st_uid}, not by this user (uid {uid}): another user "
            "could have put it there; nothing was changed",
            hint="use a data dir only this user can write (DONJON_DATA_DIR; default "
            "~/.local/share/donjon), or chown what is in it after checking it",
        )
