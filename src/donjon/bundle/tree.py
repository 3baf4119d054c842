"""Walking, re-moding and removing bundle trees, without recursion.

A tree on the node may have been made by an attacker (a staging directory
left half-unpacked, a crash before the unpack limits existed), so nothing
here recurses (Python's recursion limit is about 1,000 levels) and removal
never raises: clean-up that can fail leaves disk behind.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["make_read_only", "remove_tree", "walk_files"]

log = logging.getLogger("donjon")


def _scan(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def _walk(root: Path) -> Iterator[tuple[str, list[os.DirEntry[str]]]]:
    """Every directory under `root` (itself first) with its entries; links not followed."""
    stack = [str(root)]
    while stack:
        here = stack.pop()
        entries = _scan(here)
        yield here, entries
        stack.extend(e.path for e in reversed(entries) if e.is_dir(follow_symlinks=False))


def walk_files(root: Path) -> list[Path]:
    """Every non-directory under `root`, sorted by its path relative to `root`."""
    out = [
        Path(e.path)
        for _, entries in _walk(root)
        for e in entries
        if not e.is_dir(follow_symlinks=False)
    ]
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


# Bundles live under a 0700 data dir; inside it they are made read-only for
# everyone, and the sandbox mounts them read-only as well.
def make_read_only(root: Path) -> None:
    """Files 0444 (0555 if executable) and directories 0555, deepest first."""
    dirs = []
    for here, entries in _walk(root):
        dirs.append(here)
        for e in entries:
            if not e.is_dir(follow_symlinks=False):
                mode = e.stat(follow_symlinks=False).st_mode
                os.chmod(e.path, 0o555 if mode & 0o111 else 0o444)  # nosec B103 - read-only
    for here in reversed(dirs):
        os.chmod(here, 0o555)  # noqa: S103  # nosec B103 - read-only, traversable


def remove_tree(root: Path) -> bool:
    """Remove `root` and everything under it, read-only or deep; never raises.

    Returns whether `root` is gone; what could not be removed is logged.
    """
    try:
        top = os.lstat(root)
    except FileNotFoundError:
        return True
    except OSError as e:
        log.warning("cannot remove %s: %s", root, e.strerror)
        return False
    failures = 0
    if not stat.S_ISDIR(top.st_mode):
        failures += _quietly(os.unlink, str(root))
    else:
        # (path, entered): a directory is removed when it is popped the second time.
        stack: list[tuple[str, bool]] = [(str(root), False)]
        while stack:
            path, entered = stack.pop()
            if entered:
                failures += _quietly(os.rmdir, path)
                continue
            _quietly(os.chmod, path, 0o700)
            stack.append((path, True))
            try:
                entries = _scan(path)
            except OSError:
                failures += 1
                continue
            for entry in entries:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                if is_dir:
                    stack.append((entry.path, False))
                else:
                    failures += _quietly(os.unlink, entry.path)
    gone = not os.path.lexists(root)
    if not gone:
        log.warning("could not remove all of %s (%d entries left)", root, failures)
    return gone


def _quietly(op: Callable[..., object], *args: object) -> int:
    try:
        op(*args)
    except FileNotFoundError:
        return 0
    except OSError:
        return 1
    return 0
