"""How many CPUs this process may use: its affinity, bounded by its cgroups' CPU quota.

`os.sched_getaffinity` counts the CPUs the scheduler may put this process on, and
knows nothing of a cgroup's CPU quota: in a container or pod limited to 1 CPU on a
16-CPU host it says 16, and a command that forks one worker per CPU forks 16 that
throttle each other. The quota is read where the kernel shows it:

- /proc/self/cgroup names this process's cgroup in each hierarchy: cgroup v2's line
  is ``0::/path``, a v1 hierarchy's names its controllers (``4:cpu,cpuacct:/path``).
  In a container's cgroup namespace the path is ``/``; a path that climbs out of the
  namespace (``/../x``) names a cgroup this process cannot see, so it is skipped.
- v2: ``cpu.max`` in that directory of the v2 mount (/sys/fs/cgroup alone, or
  /sys/fs/cgroup/unified beside v1), "max PERIOD" (no quota) or "QUOTA PERIOD".
- v1: ``cpu.cfs_quota_us`` (-1: no quota) and ``cpu.cfs_period_us`` in that directory
  of the cpu controller's mount (/sys/fs/cgroup/cpu,cpuacct, or /sys/fs/cgroup/cpu).

A quota on an ancestor limits its descendants too, so the path and each of its
ancestors is read and the smallest quota wins. A directory that is not there is
passed over: a container without a cgroup namespace sees its own cgroup mounted at
the hierarchy's root, under a path that names the host's tree. Anything unreadable or
malformed counts as no quota: this only ever lowers a default, never fails a command.

A module of its own, outside `donjon.sandbox` (whose cgroupfs.py makes and writes the
sandboxes' cgroups): importing that package costs a CLI command 0.4 s.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

__all__ = ["CGROUP_ROOT", "PROC_CGROUP", "cgroup_cpu_limit", "usable_cpus"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The CPUs this process may use: its affinity's count, at most its cgroups' CPU
    quota rounded up to whole CPUs; at least 1."""
    cpus = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(cgroup_root, proc_cgroup)
    if limit is not None:
        cpus = min(cpus, limit)
    return max(1, cpus)


def cgroup_cpu_limit(
    cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP
) -> int | None:
    """The smallest CPU quota over this process's cgroups and their ancestors, in whole
    CPUs (ceil(quota / period)); None where none is set or none can be read."""
    text = _read(proc_cgroup)
    if text is None:
        return None
    limits: list[int] = []
    for line in text.splitlines():
        _, sep, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        ancestry = _ancestry(path) if sep and sep2 else None
        if ancestry is None:
            continue
        if controllers == "":
            limits += _v2_limits(cgroup_root, ancestry)
        elif "cpu" in controllers.split(","):
            limits += _v1_limits(cgroup_root, controllers, ancestry)
    return min(limits, default=None)


def _ancestry(path: str) -> list[PurePosixPath] | None:
    """`path` relative to its hierarchy's root, then each of its ancestors up to the root
    itself; None for a path that is not absolute or climbs out of the namespace."""
    pure = PurePosixPath(path.strip())
    if not pure.is_absolute() or ".." in pure.parts:
        return None
    rel = pure.relative_to("/")
    return [rel, *rel.parents]


def _v2_limits(root: Path, ancestry: list[PurePosixPath]) -> list[int]:
    out: list[int] = []
    for mount in (root, root / "unified"):
        for rel in ancestry:
            words = (_read(mount / rel / "cpu.max") or "").split()
            if len(words) == 2:  # "max PERIOD": no quota (not an integer)
                out += _whole_cpus(words[0], words[1])
    return out


def _v1_limits(root: Path, controllers: str, ancestry: list[PurePosixPath]) -> list[int]:
    mount = next((d for d in (root / controllers, root / "cpu") if d.is_dir()), None)
    if mount is None:
        return []
    out: list[int] = []
    for rel in ancestry:
        quota = _read(mount / rel / "cpu.cfs_quota_us")
        period = _read(mount / rel / "cpu.cfs_period_us")
        if quota is not None and period is not None:  # a quota of -1: none
            out += _whole_cpus(quota, period)
    return out


def _whole_cpus(quota: str, period: str) -> list[int]:
    """[ceil(quota / period)], or [] unless both are positive integers."""
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return []
    if q <= 0 or p <= 0:
        return []
    return [-(-q // p)]


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, ValueError):  # ValueError: not text (UnicodeDecodeError)
        return None
