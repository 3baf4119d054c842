"""A memory cgroup per call, and the out-of-memory killer kept off the supervisor.

The sandbox's cgroup holds all of a function's concurrent calls. Memory that
no process's RSS shows (socket buffers, memfd pages, pipes, /tmp) is charged
to it all the same, so one call could fill it and the killer would take the
process with the largest RSS: the supervisor, and every call with it. Two
things stop that:

- the host sets bubblewrap's and the supervisor's oom_score_adj to -1000
  (never chosen); each worker raises its own to +1000 (runtime/isolation.py);
- on cgroup v1 the host makes, under the sandbox's memory cgroup, one child
  cgroup per call slot (calls in flight, the spare and one being replaced),
  opens each one's ``cgroup.procs`` and hands the descriptors to the
  supervisor; a worker writes ``0`` to its slot's before it forks, so all it and
  its call's processes charge, kernel memory included, counts against that
  call's own limit, and only that call's processes are candidates when it is
  exceeded. (cgroup v1 checks the credentials the file was opened with.)

On cgroup v2 the sandbox's group would need its own processes moved into a
leaf first ("no internal processes"): not done yet, the oom_score_adj layer
alone applies there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from donjon.sandbox.limits import Cgroup, ResourceControl, ResourceMode
from donjon.sandbox.runtime import landlock

__all__ = ["CallGroups", "describe_call_isolation", "protect_from_oom_killer", "sandbox_processes"]

#: The supervisor and bubblewrap: never the out-of-memory killer's choice.
_NEVER_KILL = -1000
#: Room for a worker's own interpreter and its kernel objects, past the function's memory.
_CALL_OVERHEAD_MB = 32


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


def call_memory_bytes(memory_mb: int, tmp_mb: int) -> int:
    """One call's own ceiling: its memory, its /tmp and the worker's overhead."""
    return (memory_mb + tmp_mb + _CALL_OVERHEAD_MB) * 1024 * 1024


class CallGroups:
    """The per-call memory cgroups of one sandbox (cgroup v1)."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs

    @classmethod
    def make(cls, sandbox: Cgroup | None, slots: int, memory_bytes: int) -> CallGroups | None:
        """`slots` child cgroups of the sandbox's memory cgroup; None where not supported."""
        if sandbox is None or sandbox.mode is not ResourceMode.CGROUP_V1:
            return None
        memory = next((d for d in sandbox.dirs if d.parent.parent.name == "memory"), None)
        if memory is None:
            return None
        dirs = []
        try:
            for i in range(slots):
                d = memory / f"call-{i}"
                d.mkdir(exist_ok=True)
                dirs.append(d)
                (d / "memory.limit_in_bytes").write_text(str(memory_bytes))
                swap = d / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    swap.write_text(str(memory_bytes))
                # v1 charges TCP buffers to a cgroup only once it has a TCP limit: without
                # one, a call's loopback sockets draw on the host's net.ipv4.tcp_mem alone.
                tcp = d / "memory.kmem.tcp.limit_in_bytes"
                if tcp.exists():
                    tcp.write_text(str(memory_bytes))
        except OSError:
            CallGroups(dirs).remove()
            raise
        return cls(dirs)

    def oom_kills(self) -> int:
        """Processes the OOM killer took in these cgroups (v1 does not add them to the parent's)."""
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
        """A write descriptor on each slot's cgroup.procs, for the supervisor."""
        fds: list[int] = []
        try:
            for d in self.dirs:
                fds.append(os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def remove(self, wait_s: float = 5.0) -> None:
        """Remove the slots (before the sandbox's own cgroup, which they are inside),
        once their killed processes have left them."""
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
                        break
                    time.sleep(0.01)


def describe_call_isolation(resources: ResourceControl) -> list[str]:
    """For `donjon doctor`: which layers keep concurrent calls apart on this host."""
    abi = landlock.abi_version()
    if abi >= landlock.SCOPES_ABI:
        procs = (
            f"Landlock ABI {abi}: a domain per worker (no /proc entry, abstract unix "
            "socket or signal of another call)"
        )
    elif abi >= 1:
        procs = (
            f"Landlock ABI {abi}: a domain per worker (no /proc entry of another call; "
            "no scopes before ABI 6: abstract sockets stay reachable)"
        )
    else:
        procs = (
            "no Landlock: each worker's /proc shows only itself (and a few host-wide "
            "files); abstract unix sockets stay reachable between calls"
        )
    if resources.mode is ResourceMode.CGROUP_V1:
        memory = "a memory cgroup per call; supervisor never the OOM victim"
    elif resources.mode is ResourceMode.CGROUP_V2:
        memory = "one memory cgroup per sandbox; supervisor never the OOM victim"
    else:
        memory = "rlimits only (no cgroup): RLIMIT_AS per worker"
    if os.geteuid() != 0:
        memory += " (not root: oom_score_adj left as is)"
    return [procs, memory]
