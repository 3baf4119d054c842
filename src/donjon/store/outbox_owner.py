"""Who wrote or claimed an audit outbox row: one node process, named so that a node on
the same host can tell whether that process is gone.

A node has no stable identity (nodes are stateless peers; two may share a data dir,
or run in two containers of one host), so the name is that of the process: the host's
boot id (/proc/sys/kernel/random/boot_id), the inode of its pid namespace, its pid, and
its start time in clock ticks since boot (/proc/PID/stat, field 22; a reused pid has
another). Printed as `boot/ns/pid/ticks`.

`gone_here` is the one thing a node may conclude from a name without waiting: the named
process ran in this boot and this pid namespace, and no process with that pid and that
start time lives now. Anything else (another host, another container, a host that was
rebooted since, a name this version cannot read, a process alive) says nothing: the row
is left to the lease (audit/changes.py).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessName", "current", "gone_here"]

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class ProcessName:
    boot: str
    namespace: str
    pid: int
    ticks: int

    def __str__(self) -> str:
        return f"{self.boot}/{self.namespace}/{self.pid}/{self.ticks}"

    @classmethod
    def parse(cls, text: str | None) -> ProcessName | None:
        """The name `str` printed; None for anything else (NULL: a row of an older node)."""
        parts = (text or "").split("/")
        if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]), int(parts[3]))


def _start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot); None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command, which may hold spaces
    return int(fields[19])  # field 22 of the whole line


def _boot() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return "unknown"


def _namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        return "unknown"


@functools.cache
def _here() -> tuple[str, str]:
    return _boot(), _namespace()


def current() -> ProcessName:
    """This process's name (read once per call: a forked child gets its own)."""
    pid = os.getpid()
    boot, namespace = _here()
    ticks = _start_ticks(pid)
    if ticks is None:  # no /proc: a name no node will ever take for gone
        return ProcessName(boot, "unknown", pid, 0)
    return ProcessName(boot, namespace, pid, ticks)


def gone_here(text: str | None) -> bool:
    """Whether the process `text` names ran on this host in this boot and pid namespace
    and has ended (module docstring); False whenever that is not known."""
    name = ProcessName.parse(text)
    boot, namespace = _here()
    if name is None or "unknown" in (boot, namespace, name.boot, name.namespace):
        return False
    if (name.boot, name.namespace) != (boot, namespace):
        return False
    return _start_ticks(name.pid) != name.ticks
