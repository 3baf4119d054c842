"""The node-wide budget: one cgroup per node holding every sandbox it starts.

Each sandbox's cgroup bounds one function version (its memory, its processes);
nothing bounded their sum, so a node with fifty functions of 512 MiB each could
be driven past the host's memory, and the host's OOM killer (not the node's)
would choose what dies. The node's cgroup, made at start under Donjon's group
in each hierarchy (``donjon/node-<pid>-<tag>``), holds all of them with the
budget as its own ceilings: the kernel charges every sandbox's memory and
processes to it too, hierarchically, and past the budget a call of this node
fails (a fork gets EAGAIN; the OOM killer picks among the node's workers,
which raise their oom_score_adj to +1000, never a supervisor at -1000).

Defaults: memory, 80% of the host's memory (MemTotal, or the node's own
memory cgroup limit when lower); processes, half the kernel's pid_max (and
threads-max). `DONJON_SANDBOX_MEMORY_BUDGET_MB` and `DONJON_SANDBOX_PIDS_BUDGET`
set them.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from donjon.config import SandboxSettings
from donjon.sandbox.cgroupfs import ResourceMode, read_words, write_present

__all__ = [
    "Budget",
    "apply_budget",
    "node_budget",
    "node_group_name",
    "node_tag",
    "parse_node_group",
]

_MIB = 1024 * 1024
#: The share of the host's memory the node's sandboxes may use together by default.
_MEMORY_SHARE = 0.8
#: At least this much, whatever the host says (a budget smaller than one sandbox is no use).
_MIN_MEMORY = 256 * _MIB
_NODE = re.compile(r"^node-(\d+)-([0-9a-f]{8})$")
#: cgroup v1 reports "no limit" as a huge page-aligned number.
_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class Budget:
    """The ceilings over all of a node's sandboxes together."""

    memory_bytes: int
    pids: int
    #: Where each figure came from, for `donjon doctor`.
    memory_source: str
    pids_source: str


def node_tag(data_dir: Path) -> str:
    """A node's tag: the hash of its data dir (as its sandbox staging directory is named)."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]


def node_group_name(tag: str) -> str:
    """The node's cgroup: its process id (a sweep tells a live node's from a dead one's)
    and a tag (the first 8 hex digits of its data dir's hash)."""
    return f"node-{os.getpid()}-{tag[:8]}"


def parse_node_group(name: str) -> int | None:
    """The process id in a node cgroup's name; None for any other name."""
    m = _NODE.match(name)
    return int(m.group(1)) if m else None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def host_memory_bytes() -> int:
    """MemTotal, or the memory limit of the cgroup this process runs in when lower."""
    total = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        total = 0
    for limit in _own_memory_limits():
        if 0 < limit < _UNLIMITED and (total == 0 or limit < total):
            total = limit
    return total


def _own_memory_limits() -> list[int]:
    """memory.max (v2) or memory.limit_in_bytes (v1) of this process's own cgroup."""
    out: list[int] = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":
            for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
                value = _read_int(root / rel / "memory.max")
                if value is not None:
                    out.append(value)
        elif "memory" in controllers.split(","):
            value = _read_int(Path("/sys/fs/cgroup/memory") / rel / "memory.limit_in_bytes")
            if value is not None:
                out.append(value)
    return out


def _kernel_pids() -> int:
    found = [
        v
        for v in (
            _read_int(Path("/proc/sys/kernel/pid_max")),
            _read_int(Path("/proc/sys/kernel/threads-max")),
        )
        if v
    ]
    return min(found) if found else 32768


def node_budget(settings: SandboxSettings) -> Budget:
    """The budget `settings` ask for, or the defaults computed from this host."""
    if settings.memory_budget_mb is not None:
        memory = settings.memory_budget_mb * _MIB
        memory_source = "DONJON_SANDBOX_MEMORY_BUDGET_MB"
    else:
        host = host_memory_bytes()
        memory = max(_MIN_MEMORY, int(host * _MEMORY_SHARE) // _MIB * _MIB)
        memory_source = f"default: 80% of the host's {host // _MIB} MiB"
    if settings.pids_budget is not None:
        pids, pids_source = settings.pids_budget, "DONJON_SANDBOX_PIDS_BUDGET"
    else:
        kernel = _kernel_pids()
        pids, pids_source = kernel // 2, f"default: half the kernel's {kernel}"
    return Budget(memory, pids, memory_source, pids_source)


def apply_budget(mode: ResourceMode, controller: str, d: Path, budget: Budget) -> None:
    """The node's ceilings on its own cgroup (`d`, in `controller`'s hierarchy)."""
    if mode is ResourceMode.CGROUP_V2:
        write_present(d, "memory.max", str(budget.memory_bytes))
        write_present(d, "memory.swap.max", "0")
        write_present(d, "pids.max", str(budget.pids))
        wanted = read_words(d.parent / "cgroup.subtree_control")
        if wanted:  # hand the node's sandboxes what Donjon's group has
            (d / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(wanted)))
    elif controller == "memory":
        (d / "memory.limit_in_bytes").write_text(str(budget.memory_bytes))
        write_present(d, "memory.memsw.limit_in_bytes", str(budget.memory_bytes))
    elif controller == "pids":
        (d / "pids.max").write_text(str(budget.pids))
