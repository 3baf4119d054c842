"""Resource control: cgroup v2, cgroup v1, or rlimits only, whichever this host allows.

Each sandbox gets its own cgroup with a memory ceiling and a process count
ceiling. Inside, every call's process also has RLIMIT_AS, so most overruns
end as a clean MemoryError; the cgroup is the hard backstop.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = ["Cgroup", "ResourceControl", "ResourceMode", "detect_resource_control"]

_ROOT = Path("/sys/fs/cgroup")
_GROUP = "donjon"


class ResourceMode(StrEnum):
    CGROUP_V2 = "cgroup-v2"
    CGROUP_V1 = "cgroup-v1"
    RLIMIT = "rlimit"


@dataclass
class Cgroup:
    """One sandbox's cgroup (one directory per controller on v1)."""

    mode: ResourceMode
    dirs: tuple[Path, ...]

    def add(self, pid: int) -> None:
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(pid))

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
        deadline = time.monotonic() + wait_s
        for d in self.dirs:
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break  # still busy: left for the next start's sweep
                    time.sleep(0.01)


class ResourceControl:
    """Creates cgroups in the mode this host supports."""

    def __init__(self, mode: ResourceMode, base: dict[str, Path]) -> None:
        self.mode = mode
        self._base = base
        self._counter = 0

    def describe(self) -> str:
        if self.mode is ResourceMode.RLIMIT:
            return "rlimit (no writable cgroup hierarchy: per-process RLIMIT_AS only)"
        where = ", ".join(f"{k}={v}" for k, v in sorted(self._base.items()))
        return f"{self.mode.value} ({where})"

    def create(self, label: str, memory_bytes: int, pids_max: int,
               pid: int | None = None) -> Cgroup | None:
        """A new cgroup with these limits; `pid` (and so its later children) joins it."""
        if self.mode is ResourceMode.RLIMIT:
            return None
        self._counter += 1
        name = f"{label}-{os.getpid()}-{self._counter}"
        dirs = []
        for controller, base in self._base.items():
            d = base / name
            d.mkdir(exist_ok=True)
            dirs.append(d)
            if self.mode is ResourceMode.CGROUP_V2:
                (d / "memory.max").write_text(str(memory_bytes))
                (d / "memory.swap.max").write_text("0")
                (d / "pids.max").write_text(str(pids_max))
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
        """Remove empty cgroups whose gateway process is gone (a crash, a slow exit)."""
        removed = 0
        for base in self._base.values():
            for d in base.iterdir() if base.is_dir() else ():
                parts = d.name.rsplit("-", 2)
                if len(parts) != 3 or not parts[1].isdigit() or Path(f"/proc/{parts[1]}").exists():
                    continue  # not ours, or its gateway still runs
                try:
                    d.rmdir()  # fails while a process is still inside
                    removed += 1
                except OSError:
                    continue
        return removed


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
