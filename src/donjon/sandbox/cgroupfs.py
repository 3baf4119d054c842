"""The cgroup filesystem, low level: modes, knobs, cgroup.procs descriptors, removal.

limits.py (each sandbox's cgroup), budget.py (the node's) and callgroups.py
(each call's) build on these.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path

__all__ = [
    "ROOT",
    "ResourceMode",
    "join_before_exec",
    "kill_members",
    "open_joins",
    "open_procs",
    "read_words",
    "remove_cgroup_dirs",
    "v2_root",
    "write_present",
]

ROOT = Path("/sys/fs/cgroup")
#: Where cgroup v2 is mounted: alone (unified), or beside v1 (hybrid).
_V2_ROOTS = (ROOT, ROOT / "unified")


class ResourceMode(StrEnum):
    CGROUP_V2 = "cgroup-v2"
    CGROUP_V1 = "cgroup-v1"
    RLIMIT = "rlimit"


def open_procs(dirs: Iterable[Path]) -> list[int]:
    """A write descriptor on each directory's cgroup.procs, in order (the caller closes
    them); none is left open if one fails."""
    return _open_for_writing([d / "cgroup.procs" for d in dirs])


def open_joins(dirs: Iterable[Path]) -> list[int]:
    """A write descriptor per directory through which the process that writes b"0" joins
    that cgroup, in order (the caller closes them); none is left open if one fails.

    On cgroup v1 it is the directory's `tasks`, not its `cgroup.procs`. Both
    check the opener's credentials; both move the writer. Through cgroup.procs
    the kernel takes its global threadgroup lock for writing, and the first
    such write after a quiet spell waits out an RCU grace period (13-29 ms
    measured here, on the cold start's critical path, twice); written "0"
    through `tasks` it moves the writer's own thread and takes no global lock
    (0.04 ms). Every writer here is a process just forked (the pre-exec step
    of bubblewrap's launcher, a worker's parent), so it has one thread, and
    that thread is the whole process; or spawn.py's launching thread, which
    moves alone on purpose. cgroup v2 has no such file (its
    `cgroup.threads` only works in threaded subtrees): cgroup.procs there.
    """
    return _open_for_writing(
        [d / "tasks" if (d / "tasks").exists() else d / "cgroup.procs" for d in dirs]
    )


def _open_for_writing(paths: list[Path]) -> list[int]:
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
    except OSError:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def join_before_exec(fds: list[int]) -> Callable[[], None]:
    """A pre-exec step: the new process writes "0" (itself) to each descriptor of
    `open_joins` (the child of a fork has one thread: all of it joins).

    It runs between fork and exec, so it only writes to descriptors opened
    beforehand: no allocation, no lock, no import.
    """

    def join() -> None:
        for fd in fds:
            os.write(fd, b"0")

    return join


def remove_cgroup_dirs(dirs: Iterable[Path], wait_s: float, *, kill: bool = False) -> None:
    """rmdir each cgroup directory once its killed processes have left it (they take
    a moment); one still busy after `wait_s` is left for the next start's sweep.

    `kill`: the directory is a sandbox's or a call's, whose every process must be gone:
    whatever is still in it when rmdir finds it busy is killed (`kill_members`). A
    sandbox's processes die with bubblewrap's launcher (die-with-parent), but not one
    whose parent was killed before it asked for that signal: seen once in 18 starts
    cancelled while their cgroup was made, a bwrap left running for good in a cgroup
    nobody would remove (the sweep leaves a cgroup with a process in it)."""
    deadline = time.monotonic() + wait_s
    for d in dirs:
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if kill:
                    kill_members(d)
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)


def kill_members(d: Path) -> None:
    """SIGKILL every process in cgroup `d` (not in its child cgroups): cgroup v2's
    `cgroup.kill` where the kernel has it, else each pid its cgroup.procs lists (in this
    process's pid namespace; a member cannot leave a cgroup it did not join by itself,
    and every process here is confined, so the list is what runs in it)."""
    try:
        (d / "cgroup.kill").write_text("1")
        return
    except OSError:
        pass  # v1, or a v2 kernel before 5.14: one by one
    try:
        pids = (d / "cgroup.procs").read_text().split()
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, ValueError):
            continue


def write_present(d: Path, name: str, value: str) -> bool:
    """Write a cgroup knob if its controller put it there; False when it is absent."""
    try:
        fd = os.open(d / name, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    return True


def read_words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


def v2_root() -> Path | None:
    """Where cgroup v2 is mounted here: /sys/fs/cgroup (unified) or .../unified (hybrid)."""
    for root in _V2_ROOTS:
        if (root / "cgroup.controllers").exists():
            return root
    return None
