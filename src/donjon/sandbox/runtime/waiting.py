"""Is a warm worker back waiting for its next call? Asked of the kernel, not of the worker.

In warm mode the function's code is the worker process: it can write the
runtime's reply frames, close or shut down the call's socket and keep
running, and it can forge anything the runtime would say. So a warm call
ends (and its deadline is disarmed) only when the kernel shows the worker
idle: one thread, no other process in its pid namespace, blocked in
``recvmsg`` on its hand-off socket, the very socket the supervisor made for
it (its inode). The supervisor reads that from ``/proc/<pid>/task``,
``/proc/<pid>/fd/<fd>`` and ``/proc/<pid>/syscall``; the last two belong to
(host) root and pass no ptrace-access check while the worker is not
dumpable, so a warm worker makes itself dumpable before any function code
(worker.py). Code that clears that flag makes itself unreadable: it is then
never seen back, and each of its calls ends at its deadline, killed.

So a warm worker keeps no thread between calls: one whose import leaves a
thread running fails to start ("left threads running"), and a call that
leaves one (an executor not shut down) runs into its deadline.

What it cannot see: code run from a signal handler while the worker waits.
Between calls that is the idle check's business (supervisor.py: other
processes, or more CPU than it allows).

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import os

from . import lowlevel

#: recvmsg(2)'s number, which /proc/<pid>/syscall shows while a thread is blocked in it.
_RECVMSG = {"x86_64": 47, "aarch64": 212, "riscv64": 212, "ppc64le": 342, "s390x": 372}
RECVMSG = _RECVMSG.get(os.uname().machine, -1)


def back_waiting(parent: int, fd: int, inode: int) -> bool:
    """True when the worker under `parent` is idle, blocked reading its hand-off socket.

    `fd` is where the worker keeps that socket, `inode` the socket's inode as
    the supervisor made it. Anything unexpected (a /proc file it cannot read,
    an unknown architecture) answers False: the call's deadline then holds.
    """
    inner = lowlevel.children(parent)
    if len(inner) != 1 or RECVMSG < 0:
        return False
    pid = inner[0]
    try:
        if _threads(pid) != 1 or lowlevel.children(pid):
            return False
        if os.readlink(f"/proc/{pid}/fd/{fd}") != f"socket:[{inode}]":
            return False
        with open(f"/proc/{pid}/syscall", "rb") as f:
            fields = f.read().split()
        # Still one thread once seen blocked: none was started before it blocked.
        return (
            len(fields) >= 2
            and fields[0] == str(RECVMSG).encode()
            and int(fields[1], 16) == fd
            and _threads(pid) == 1
        )
    except (OSError, ValueError):
        return False


def single_threaded(parent: int) -> bool:
    """True when the worker under `parent` runs one thread (as it must between warm calls)."""
    inner = lowlevel.children(parent)
    try:
        return len(inner) == 1 and _threads(inner[0]) == 1
    except OSError:
        return False


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))
