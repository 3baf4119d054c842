"""Resource control: cgroup v2, cgroup v1, or rlimits only, whichever this host allows.

Each sandbox gets its own cgroup with a memory ceiling, a process count
ceiling and, where the cpu controller is available, a CPU quota. Inside,
every call's process also has RLIMIT_AS, so most overruns end as a clean
MemoryError; the cgroup is the hard backstop.

A sandbox is in its cgroup from its first instruction (see `Cgroup.join_fds`),
so the cgroup namespace bubblewrap makes is rooted there and a function reads
`/` in /proc/self/cgroup. Cgroup names carry the function's name and a random
tag: no gateway pid, no host path.

A serving node first makes its own cgroup under Donjon's (`open_node`,
budget.py): every sandbox it starts is made inside, so the node's memory and
pids budget bounds all of them together. cgroup v2 is found where systemd
mounts it, alone at /sys/fs/cgroup or beside v1 at /sys/fs/cgroup/unified (a
"hybrid" host); it is used when it has the memory and pids controllers, else
v1, else rlimits.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from donjon.sandbox.budget import Budget, apply_budget, node_group_name, parse_node_group
from donjon.sandbox.cgroupfs import (
    ROOT,
    ResourceMode,
    join_before_exec,
    open_joins,
    open_procs,
    read_words,
    remove_cgroup_dirs,
    v2_root,
    write_present,
)
from donjon.sandbox.errors import SandboxUnavailable

__all__ = [
    "Cgroup",
    "ResourceControl",
    "ResourceMode",
    "detect_resource_control",
    "join_before_exec",
    "open_joins",
    "open_procs",
    "remove_cgroup_dirs",
    "v2_root",
    "write_present",
]

_GROUP = "donjon"
#: The CFS period: a quota of N cores is N times this, per period.
_CPU_PERIOD_US = 100_000
#: A cgroup this old with no process in it was left behind (a crash): any node may remove it.
_ORPHAN_AGE_S = 60.0
_TAGGED = re.compile(r"-[0-9a-f]{12}$")


@dataclass
class Cgroup:
    """One sandbox's cgroup (one directory per controller on v1)."""

    mode: ResourceMode
    dirs: tuple[Path, ...]
    #: The controller (v1 hierarchy) of each directory; "unified" on v2.
    controllers: tuple[str, ...] = ()

    def add(self, pid: int) -> None:
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(pid))

    def join_fds(self) -> list[int]:
        """Open each directory's join file for writing (the caller closes them):
        cgroup.procs, or on v1 `tasks` (cgroupfs.open_joins says why).

        A child process that writes b"0" to each joins the cgroup itself: done
        between fork and exec, everything it runs starts inside.
        """
        return open_joins(self.dirs)

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
        """Remove the cgroup once its killed processes have left it (they take a moment);
        one still in it by then is killed (a sandbox's cgroup holds nothing else)."""
        remove_cgroup_dirs(self.dirs, wait_s, kill=True)


class ResourceControl:
    """Creates cgroups in the mode this host supports."""

    def __init__(self, mode: ResourceMode, base: dict[str, Path]) -> None:
        self.mode = mode
        self._base = base
        #: Where sandboxes' cgroups are made: the node's own (open_node), else Donjon's.
        self._parents = dict(base)
        self._counter = 0
        self.budget: Budget | None = None
        self._budget_hits_seen = 0

    @property
    def hierarchies(self) -> dict[str, Path]:
        """Donjon's cgroup in each hierarchy in use (controller -> directory)."""
        return dict(self._base)

    @property
    def node_dirs(self) -> tuple[Path, ...]:
        """The node's own cgroups (after `open_node`), one per hierarchy."""
        return tuple(self._parents.values()) if self.budget is not None else ()

    def open_node(self, budget: Budget, tag: str) -> None:
        """Make this node's cgroup in each hierarchy with `budget` as its ceilings;
        every sandbox made afterwards is made inside it."""
        if self.mode is ResourceMode.RLIMIT:
            return
        name = node_group_name(tag)
        made: dict[str, Path] = {}
        try:
            for controller, base in self._base.items():
                d = base / name
                d.mkdir(exist_ok=True)
                made[controller] = d
                apply_budget(self.mode, controller, d, budget)
        except OSError as e:
            remove_cgroup_dirs(made.values(), 1.0)
            raise SandboxUnavailable(
                f"the node's cgroup could not be made or given its budget: {e}",
                hint="check DONJON_SANDBOX_MEMORY_BUDGET_MB and DONJON_SANDBOX_PIDS_BUDGET "
                "(the budget must be above what the node's sandboxes use now); donjon doctor",
            ) from e
        self._parents = made
        self.budget = budget

    def budget_reached(self) -> str | None:
        """After an OOM kill: was it the node's memory budget (reached since last asked)?
        The reason to give the caller, else None (its own limit)."""
        d = self._parents.get("memory" if self.mode is ResourceMode.CGROUP_V1 else "unified")
        if self.budget is None or d is None:
            return None
        hits = _budget_hits(self.mode, d, self.budget.memory_bytes)
        if self.mode is ResourceMode.CGROUP_V2:
            hits, self._budget_hits_seen = hits - self._budget_hits_seen, hits
        if hits <= 0:
            return None
        return (
            "the node's sandboxes together reached its memory budget "
            f"({self.budget.memory_bytes >> 20} MiB, DONJON_SANDBOX_MEMORY_BUDGET_MB)"
        )

    def close_node(self) -> None:
        """Remove the node's cgroups (its sandboxes are gone: the pool is closed)."""
        if self.budget is None:
            return
        dirs, self._parents, self.budget = list(self._parents.values()), dict(self._base), None
        remove_cgroup_dirs(dirs, 5.0)

    @property
    def cpu(self) -> bool:
        """Is a CPU quota per sandbox in force (the cgroup cpu controller)?"""
        if self.mode is ResourceMode.CGROUP_V2:
            return self._v2_cpu
        return "cpu" in self._base

    @property
    def _v2_cpu(self) -> bool:
        return "cpu" in self.v2_controllers()

    def v2_controllers(self) -> set[str]:
        """On cgroup v2: the controllers Donjon's group hands its sandboxes."""
        base = self._base.get("unified")
        return set() if base is None else read_words(base / "cgroup.subtree_control")

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
        dirs: list[Path] = []
        try:
            self._make_dirs(name, dirs, memory_bytes, pids_max, quota)
            cgroup = Cgroup(self.mode, tuple(dirs), tuple(self._parents))
            if pid is not None:
                cgroup.add(pid)
        except BaseException:
            # Made in part: none of it may stay (the sweep runs at a node's start only).
            remove_cgroup_dirs(dirs, 0)
            raise
        return cgroup

    def _make_dirs(
        self, name: str, dirs: list[Path], memory_bytes: int, pids_max: int, quota: int | None
    ) -> None:
        """Make `name` in every hierarchy with its limits, each directory added to `dirs`
        as soon as it exists."""
        for controller, base in self._parents.items():
            d = base / name
            d.mkdir(exist_ok=True)
            dirs.append(d)
            if self.mode is ResourceMode.CGROUP_V2:
                # Each knob exists when its controller is enabled: memory and pids always
                # where detection chose v2 (a test may run v2 without them: see tests/sandbox).
                write_present(d, "memory.max", str(memory_bytes))
                write_present(d, "memory.swap.max", "0")
                write_present(d, "pids.max", str(pids_max))
                if quota is not None:
                    write_present(d, "cpu.max", f"{quota} {_CPU_PERIOD_US}")
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
                owner = parse_node_group(d.name)
                if owner is not None:  # a node's own cgroup: its sandboxes' are inside
                    if owner == os.getpid() or Path(f"/proc/{owner}").exists():
                        continue
                    removed += _sweep_dir(d, now)
                    with contextlib.suppress(OSError):
                        d.rmdir()
                    continue
                removed += _sweep_one(d, now)
        return removed


def _budget_hits(mode: ResourceMode, d: Path, limit: int) -> int:
    """How often the node's memory limit was reached: on v2 the OOM events of the node's
    own cgroup (memory.events.local); on v1, whose failcnt recent kernels leave at 0, 1
    when its peak usage came within 4 MiB of the limit (the peak is then reset)."""
    try:
        if mode is ResourceMode.CGROUP_V1:
            peak = int((d / "memory.max_usage_in_bytes").read_text())
            if peak < limit - (4 << 20):
                return 0
            (d / "memory.max_usage_in_bytes").write_text("0")
            return 1
        text = (d / "memory.events.local").read_text()
    except (OSError, ValueError):
        return 0
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom":
            return int(value)
    return 0


def _sweep_dir(base: Path, now: float) -> int:
    """Sweep a dead node's cgroup: everything in it was that node's."""
    try:
        entries = list(base.iterdir())
    except OSError:
        return 0
    return sum(_sweep_one(d, now, owner_gone=True) for d in entries if d.is_dir())


def _sweep_one(d: Path, now: float, *, owner_gone: bool = False) -> int:
    """Remove `d`, a sandbox's cgroup, if it was left behind (its per-call ones first)."""
    if not (owner_gone or _left_behind(d, now)) or _has_processes(d):
        # A live sandbox (its supervisor inside) keeps its per-call cgroups,
        # which are empty between calls: never take them from under it.
        return 0
    # Per-call cgroups (callgroups.py) and, on v2, the supervisor's leaf go first.
    for child in [*d.glob("call-*"), d / "sandbox"]:
        try:
            child.rmdir()
        except OSError:
            continue
    try:
        d.rmdir()  # fails while a process is still inside
    except OSError:
        return 0
    return 1


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


def _try_v2() -> dict[str, Path] | None:
    root = v2_root()
    if root is None:
        return None
    have = read_words(root / "cgroup.controllers")
    if not {"memory", "pids"} <= have:
        return None  # a hybrid host whose controllers are all on v1
    base = root / _GROUP
    try:
        base.mkdir(exist_ok=True)
        (root / "cgroup.subtree_control").write_text("+memory +pids")
        (base / "cgroup.subtree_control").write_text("+memory +pids")
    except OSError:
        return None
    if "cpu" in have:  # a CPU quota per sandbox where the host lets us (cpu.max)
        try:
            (root / "cgroup.subtree_control").write_text("+cpu")
            (base / "cgroup.subtree_control").write_text("+cpu")
        except OSError:
            pass
    return {"unified": base}


def _try_v1() -> dict[str, Path] | None:
    found: dict[str, Path] = {}
    for controller in ("memory", "pids"):
        root = ROOT / controller
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
    cpu = ROOT / "cpu"  # optional: a CPU quota per sandbox (cpu.cfs_quota_us)
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
