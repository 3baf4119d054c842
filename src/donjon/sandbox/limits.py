"""Resource control: cgroup v2, cgroup v1, or rlimits only, whichever this host allows.

Each sandbox gets its own cgroup with a memory ceiling, a process count
ceiling and, where the cpu controller is available, a CPU quota. Inside,
every call's process also has RLIMIT_AS, so most overruns end as a clean
MemoryError; the cgroup is the hard backstop.

A sandbox is in its cgroup from its first instruction (see `Cgroup.join_fds`),
so the cgroup namespace bubblewrap makes is rooted there and a function reads
`/` in /proc/self/cgroup. Cgroup names carry the function's name and a random
tag: no gateway pid, no host path.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = [
    "Cgroup",
    "ResourceControl",
    "ResourceMode",
    "detect_resource_control",
    "join_before_exec",
    "open_procs",
    "remove_cgroup_dirs",
]

_ROOT = Path("/sys/fs/cgroup")
_GROUP = "donjon"
#: The CFS period: a quota of N cores is N times this, per period.
_CPU_PERIOD_US = 100_000
#: A cgroup this old with no process in it was left behind (a crash): any node may remove it.
_ORPHAN_AGE_S = 60.0
_TAGGED = re.compile(r"-[0-9a-f]{12}$")


class ResourceMode(StrEnum):
    CGROUP_V2 = "cgroup-v2"
    CGROUP_V1 = "cgroup-v1"
    RLIMIT = "rlimit"


def open_procs(dirs: Iterable[Path]) -> list[int]:
    """A write descriptor on each directory's cgroup.procs, in order (the caller closes
    them); none is left open if one fails."""
    fds: list[int] = []
    try:
        for d in dirs:
            fds.append(os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
    except OSError:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def join_before_exec(fds: list[int]) -> Callable[[], None]:
    """A pre-exec step: the new process writes "0" (itself) to each cgroup.procs.

    It runs between fork and exec, so it only writes to descriptors opened
    beforehand: no allocation, no lock, no import.
    """

    def join() -> None:
        for fd in fds:
            os.write(fd, b"0")

    return join


def remove_cgroup_dirs(dirs: Iterable[Path], wait_s: float) -> None:
    """rmdir each cgroup directory once its killed processes have left it (they take
    a moment); one still busy after `wait_s` is left for the next start's sweep."""
    deadline = time.monotonic() + wait_s
    for d in dirs:
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)


@dataclass
class Cgroup:
    """One sandbox's cgroup (one directory per controller on v1)."""

    mode: ResourceMode
    dirs: tuple[Path, ...]

    def add(self, pid: int) -> None:
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(pid))

    def join_fds(self) -> list[int]:
        """Open cgroup.procs of each directory for writing (the caller closes them).

        A child process that writes b"0" to each joins the cgroup itself: done
        between fork and exec, everything it runs starts inside.
        """
        return open_procs(self.dirs)

    def oom_kills(self) -> int:
        name = "memory.events" if self.mode is ResourceMode.CGROUP_V2 else "memory.oom_control"
        for d in self.dirs:
            f = d / name
            if f.exists():
                for line in f.read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        return 0

    def remove(self, wait_s: float = 5.0) -> None:
        """Remove the cgroup once its killed processes have left it (they take a moment)."""
        remove_cgroup_dirs(self.dirs, wait_s)


class ResourceControl:
    """Creates cgroups in the mode this host supports."""

    def __init__(self, mode: ResourceMode, base: dict[str, Path]) -> None:
        self.mode = mode
        self._base = base
        self._counter = 0

    @property
    def cpu(self) -> bool:
        """Is a CPU quota per sandbox in force (the cgroup cpu controller)?"""
        if self.mode is ResourceMode.CGROUP_V2:
            return self._v2_cpu
        return "cpu" in self._base

    @property
    def _v2_cpu(self) -> bool:
        base = self._base.get("unified")
        return base is not None and "cpu" in _read_words(base / "cgroup.subtree_control")

    def describe(self) -> str:
        if self.mode is ResourceMode.RLIMIT:
            return "rlimit (no writable cgroup hierarchy: per-process RLIMIT_AS only)"
        where = ", ".join(f"{k}={v}" for k, v in sorted(self._base.items()))
        return f"{self.mode.value} ({where})"

    def describe_cpu(self) -> str:
        """What bounds a sandbox's CPU, for `donjon doctor`."""
        if self.cpu:
            knob = "cpu.max" if self.mode is ResourceMode.CGROUP_V2 else "cpu.cfs_quota_us"
            return f"cgroup cpu controller in force (a quota per sandbox, {knob})"
        return (
            "no cgroup cpu controller: calls are bounded by their deadline and "
            "one-call workers by RLIMIT_CPU only"
        )

    def create(
        self,
        label: str,
        memory_bytes: int,
        pids_max: int,
        pid: int | None = None,
        cpu_cores: float | None = None,
    ) -> Cgroup | None:
        """A new cgroup with these limits; `pid` (and so its later children) joins it.

        `cpu_cores`: the sandbox's CPU quota, in cores, where the cpu controller is in force.
        """
        if self.mode is ResourceMode.RLIMIT:
            return None
        self._counter += 1
        name = f"{label}-{secrets.token_hex(6)}"
        quota = None if cpu_cores is None else max(1000, int(cpu_cores * _CPU_PERIOD_US))
        dirs = []
        for controller, base in self._base.items():
            d = base / name
            d.mkdir(exist_ok=True)
            dirs.append(d)
            if self.mode is ResourceMode.CGROUP_V2:
                (d / "memory.max").write_text(str(memory_bytes))
                (d / "memory.swap.max").write_text("0")
                (d / "pids.max").write_text(str(pids_max))
                if quota is not None and (d / "cpu.max").exists():
                    (d / "cpu.max").write_text(f"{quota} {_CPU_PERIOD_US}")
            elif controller == "cpu":
                if quota is not None:
                    (d / "cpu.cfs_period_us").write_text(str(_CPU_PERIOD_US))
                    (d / "cpu.cfs_quota_us").write_text(str(quota))
            elif controller == "memory":
                (d / "memory.limit_in_bytes").write_text(str(memory_bytes))
                swap = d / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    swap.write_text(str(memory_bytes))
            elif controller == "pids":
                (d / "pids.max").write_text(str(pids_max))
        cgroup = Cgroup(self.mode, tuple(dirs))
        if pid is not None:
            cgroup.add(pid)
        return cgroup

    def sweep(self) -> int:
        """Remove empty cgroups left behind (a crash, a slow exit).

        Named with a random tag, a cgroup is empty only for the moment between
        its creation and its sandbox's start, and after its sandbox ended: one
        that has been empty for a minute is nobody's.
        """
        removed = 0
        now = time.time()
        for base in self._base.values():
            for d in base.iterdir() if base.is_dir() else ():
                if not _left_behind(d, now) or _has_processes(d):
                    # A live sandbox (its supervisor inside) keeps its per-call cgroups,
                    # which are empty between calls: never take them from under it.
                    continue
                for child in d.glob("call-*"):  # per-call cgroups (callgroups.py) go first
                    try:
                        child.rmdir()
                    except OSError:
                        continue
                try:
                    d.rmdir()  # fails while a process is still inside
                    removed += 1
                except OSError:
                    continue
        return removed


def _left_behind(d: Path, now: float) -> bool:
    """Is `d` a cgroup of a node that is gone (old naming: label-pid-n) or long unused?"""
    if _TAGGED.search(d.name):
        try:
            return now - d.stat().st_mtime > _ORPHAN_AGE_S
        except OSError:
            return False
    parts = d.name.rsplit("-", 2)
    return len(parts) == 3 and parts[1].isdigit() and not Path(f"/proc/{parts[1]}").exists()


def _has_processes(d: Path) -> bool:
    try:
        return bool((d / "cgroup.procs").read_text().strip())
    except OSError:
        return True  # unreadable: leave it be


def _read_words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


def _try_v2() -> dict[str, Path] | None:
    controllers = _ROOT / "cgroup.controllers"
    if not controllers.exists():
        return None
    have = set(controllers.read_text().split())
    if not {"memory", "pids"} <= have:
        return None
    base = _ROOT / _GROUP
    try:
        base.mkdir(exist_ok=True)
        (_ROOT / "cgroup.subtree_control").write_text("+memory +pids")
        (base / "cgroup.subtree_control").write_text("+memory +pids")
    except OSError:
        return None
    if "cpu" in have:  # a CPU quota per sandbox where the host lets us (cpu.max)
        try:
            (_ROOT / "cgroup.subtree_control").write_text("+cpu")
            (base / "cgroup.subtree_control").write_text("+cpu")
        except OSError:
            pass
    return {"unified": base}


def _try_v1() -> dict[str, Path] | None:
    found: dict[str, Path] = {}
    for controller in ("memory", "pids"):
        root = _ROOT / controller
        if not (root / "cgroup.procs").exists():
            return None
        base = root / _GROUP
        try:
            base.mkdir(exist_ok=True)
        except OSError:
            return None
        if not os.access(base, os.W_OK):
            return None
        found[controller] = base
    cpu = _ROOT / "cpu"  # optional: a CPU quota per sandbox (cpu.cfs_quota_us)
    if (cpu / "cpu.cfs_quota_us").exists():
        try:
            (cpu / _GROUP).mkdir(exist_ok=True)
            if os.access(cpu / _GROUP, os.W_OK):
                found["cpu"] = cpu / _GROUP
        except OSError:
            pass
    return found


def detect_resource_control() -> ResourceControl:
    """The best resource control this host allows, tried in order v2, v1, rlimit."""
    v2 = _try_v2()
    if v2:
        return ResourceControl(ResourceMode.CGROUP_V2, v2)
    v1 = _try_v1()
    if v1:
        return ResourceControl(ResourceMode.CGROUP_V1, v1)
    return ResourceControl(ResourceMode.RLIMIT, {})
