"""A memory and a pids cgroup per call, and the out-of-memory killer kept off the supervisor.

The sandbox's cgroup holds all of a function's concurrent calls. Memory that
no process's RSS shows (socket buffers, memfd pages, pipes, /tmp) is charged
to it all the same, so one call could fill it and the killer would take the
process with the largest RSS: the supervisor, and every call with it. Two
things stop that:

- the host sets bubblewrap's and the supervisor's oom_score_adj to -1000
  (never chosen); each worker raises its own to +1000 (runtime/isolation.py);
- on cgroup v1 the host makes, under the sandbox's memory cgroup, one child
  cgroup per call slot (calls in flight, the spare and one being replaced),
  opens the file each one is joined by (v1: ``tasks``, see cgroupfs.open_joins)
  and hands the descriptors to the supervisor; a worker writes ``0`` to its
  slot's before it forks, so all it and its call's processes charge, kernel
  memory included, counts against that call's own limit, and only that call's
  processes are candidates when it is exceeded. (cgroup v1 checks the
  credentials the file was opened with.)

The same slots exist in the sandbox's pids cgroup: each has a pids.max of
`CALL_PIDS`, so a call that forks without end fills its own share only. The
sandbox's pids.max (`sandbox_pids_max`) is every call's share plus
`RESERVE_PIDS` for the supervisor, bubblewrap and the set-up of the spare and
of a replacement worker: whatever the calls in flight do, a new worker can
still be forked. The sandbox's limit stays the backstop.

On cgroup v2 a cgroup that hands controllers to its children may hold no
process itself ("no internal processes"). The sandbox starts in its cgroup (its
cgroup namespace is rooted there); at hello, before any worker exists, the host
moves bubblewrap and the supervisor into a leaf, ``sandbox``, enables the
controllers for the children and makes the same slots, ``call-N``, each with a
memory.max (swap 0) and a pids.max. A worker joins its slot the same way
(cgroup v2 also checks the opener's credentials and cgroup namespace, since
Linux 5.16). Only the controllers Donjon's group has are limited: on a hybrid
host whose memory and pids are on v1, v1 is used instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from donjon.sandbox.cgroupfs import read_words, write_present
from donjon.sandbox.limits import (
    Cgroup,
    ResourceControl,
    ResourceMode,
    open_joins,
    remove_cgroup_dirs,
)
from donjon.sandbox.runtime import landlock

__all__ = [
    "CALL_PIDS",
    "CallGroups",
    "describe_call_isolation",
    "protect_from_oom_killer",
    "sandbox_pids_max",
    "sandbox_processes",
]

#: The supervisor and bubblewrap: never the out-of-memory killer's choice.
_NEVER_KILL = -1000
#: Room for a worker's own interpreter and its kernel objects, past the function's memory.
_CALL_OVERHEAD_MB = 32
#: One call's processes and threads, its worker and the worker's parent included.
CALL_PIDS = 64
#: Past every call's share: bubblewrap, the supervisor, and a spare and a
#: replacement worker being made while every call in flight holds its share full.
RESERVE_PIDS = 16
#: The per-call cgroups are made in these v1 hierarchies (memory first: it must exist).
_CONTROLLERS = ("memory", "pids")


def protect_from_oom_killer(pids: list[int]) -> bool:
    """oom_score_adj -1000 for `pids` (bubblewrap and the supervisor). Needs root
    (CAP_SYS_RESOURCE); False when this node may not lower it."""
    if os.geteuid() != 0:
        return False
    done = True
    for pid in pids:
        try:
            Path(f"/proc/{pid}/oom_score_adj").write_text(str(_NEVER_KILL))
        except OSError:
            done = False  # the process is gone: nothing left to protect
    return done


def sandbox_processes(root: int) -> list[int]:
    """`root` and every process under it (bubblewrap and the supervisor, at hello)."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return out


def _limit_memory(d: Path, memory_bytes: int) -> None:
    (d / "memory.limit_in_bytes").write_text(str(memory_bytes))
    swap = d / "memory.memsw.limit_in_bytes"
    if swap.exists():
        swap.write_text(str(memory_bytes))
    # v1 charges TCP buffers to a cgroup only once it has a TCP limit: without
    # one, a call's loopback sockets draw on the host's net.ipv4.tcp_mem alone.
    tcp = d / "memory.kmem.tcp.limit_in_bytes"
    if tcp.exists():
        tcp.write_text(str(memory_bytes))


def call_memory_bytes(memory_mb: int, tmp_mb: int) -> int:
    """One call's own ceiling: its memory, its /tmp and the worker's overhead."""
    return (memory_mb + tmp_mb + _CALL_OVERHEAD_MB) * 1024 * 1024


def sandbox_pids_max(calls: int) -> int:
    """The sandbox's pids.max: every call's share, and room for the supervisor and new workers."""
    return calls * CALL_PIDS + RESERVE_PIDS


class CallGroups:
    """The per-call cgroups of one sandbox: per slot, one in each of `width` hierarchies
    (v1: memory, and pids where the sandbox has a pids cgroup; v2: one)."""

    def __init__(
        self, dirs: list[Path], width: int = 1, leaf: Path | None = None, v2: bool = False
    ) -> None:
        #: Slot-major: slot 0's memory (and pids) directory, then slot 1's, ...
        self.dirs = dirs
        self.width = width
        #: cgroup v2: the leaf bubblewrap and the supervisor were moved into.
        self.leaf = leaf
        self.v2 = v2

    @classmethod
    def make(
        cls,
        sandbox: Cgroup | None,
        slots: int,
        memory_bytes: int,
        pids_max: int = CALL_PIDS,
        processes: list[int] | None = None,
    ) -> CallGroups | None:
        """`slots` child cgroups of the sandbox's memory (and pids) cgroup; None where not
        supported. On v2, `processes` (the sandbox's, at hello) move into a leaf first."""
        if sandbox is not None and sandbox.mode is ResourceMode.CGROUP_V2:
            return cls._make_v2(sandbox, slots, memory_bytes, pids_max, processes or [])
        if sandbox is None or sandbox.mode is not ResourceMode.CGROUP_V1:
            return None
        found = dict(zip(sandbox.controllers, sandbox.dirs, strict=False))
        if "memory" not in found:
            return None
        parents = [(c, found[c]) for c in _CONTROLLERS if c in found]
        dirs: list[Path] = []
        try:
            for i in range(slots):
                for controller, parent in parents:
                    d = parent / f"call-{i}"
                    d.mkdir(exist_ok=True)
                    dirs.append(d)
                    if controller == "memory":
                        _limit_memory(d, memory_bytes)
                    else:
                        (d / "pids.max").write_text(str(pids_max))
        except OSError:
            CallGroups(dirs).remove()
            raise
        return cls(dirs, len(parents))

    @classmethod
    def _make_v2(
        cls, sandbox: Cgroup, slots: int, memory_bytes: int, pids_max: int, processes: list[int]
    ) -> CallGroups:
        parent = sandbox.dirs[0]
        leaf = parent / "sandbox"
        dirs: list[Path] = []
        try:
            leaf.mkdir(exist_ok=True)
            for pid in processes:
                try:
                    (leaf / "cgroup.procs").write_text(str(pid))
                except ProcessLookupError:
                    continue  # gone already: nothing to move
            # Refused (EBUSY) while a process is left in the parent: the start fails, clearly.
            wanted = read_words(parent / "cgroup.controllers") & {"memory", "pids"}
            if wanted:
                (parent / "cgroup.subtree_control").write_text(
                    " ".join(f"+{c}" for c in sorted(wanted))
                )
            for i in range(slots):
                d = parent / f"call-{i}"
                d.mkdir(exist_ok=True)
                dirs.append(d)
                write_present(d, "memory.max", str(memory_bytes))
                write_present(d, "memory.swap.max", "0")
                write_present(d, "pids.max", str(pids_max))
        except OSError:
            CallGroups(dirs, leaf=None).remove()
            raise
        return cls(dirs, 1, leaf, v2=True)

    def oom_kills(self) -> int:
        """Processes the OOM killer took in these cgroups (v1 does not add them to the parent's;
        v2 does: its sandbox's memory.events counts them already)."""
        if self.v2:
            return 0
        total = 0
        for d in self.dirs:
            try:
                text = (d / "memory.oom_control").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    total += int(value)
        return total

    def open_procs(self) -> list[int]:
        """A write descriptor on each slot's join file, for the supervisor: `width`
        consecutive ones per slot (memory, then pids). On v1 that is `tasks`, which a
        worker's parent (one thread, just forked) joins without the kernel's global
        lock (cgroupfs.open_joins); on v2, cgroup.procs."""
        return open_joins(self.dirs)

    def remove(self, wait_s: float = 5.0) -> None:
        """Remove the slots (before the sandbox's own cgroup, which they are inside),
        once their killed processes have left them (one still there is killed); on v2 the
        supervisor's leaf too."""
        remove_cgroup_dirs([*self.dirs, *([self.leaf] if self.leaf else [])], wait_s, kill=True)


def describe_call_isolation(resources: ResourceControl) -> list[str]:
    """For `donjon doctor`: which layers keep concurrent calls apart on this host."""
    abi = landlock.abi_version()
    if abi >= landlock.SCOPES_ABI:
        procs = (
            f"a /proc of each worker's own; Landlock ABI {abi}: a domain per worker (no "
            "process, abstract unix socket or signal of another call)"
        )
    elif abi >= 1:
        procs = (
            f"a /proc of each worker's own; Landlock ABI {abi}: a domain per worker (no "
            "process of another call; no scopes before ABI 6: abstract sockets stay reachable)"
        )
    else:
        procs = (
            "no Landlock: each worker's /proc shows only itself (and a few host-wide "
            "files); abstract unix sockets stay reachable between calls"
        )
    if resources.mode is ResourceMode.CGROUP_V1:
        memory = (
            f"a memory and a pids cgroup per call (pids.max {CALL_PIDS} each); "
            "supervisor never the OOM victim"
        )
    elif resources.mode is ResourceMode.CGROUP_V2:
        memory = (
            f"a memory and pids cgroup per call (cgroup v2, pids.max {CALL_PIDS} each); "
            "supervisor never the OOM victim"
        )
    else:
        memory = "rlimits only (no cgroup): RLIMIT_AS and RLIMIT_NPROC per worker"
    if os.geteuid() != 0:
        memory += " (not root: oom_score_adj left as is)"
    return [procs, memory]
