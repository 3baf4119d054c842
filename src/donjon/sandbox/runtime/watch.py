"""Child processes seen by the kernel: seccomp user notifications.

For a function whose `child_processes` policy is alert or block, a worker
loads the watching call filter (sandbox/seccomp.py) with
SECCOMP_FILTER_FLAG_NEW_LISTENER and hands the listener descriptor to the
supervisor before any function code runs (`load_watching`). From then on
every fork, vfork, clone of a process, execve or execveat of the worker and
of anything it starts stops in the kernel until the supervisor answers
(`receive`, `answer`): EPERM for block, "continue" for alert. The function
never holds the descriptor, so it can neither answer for itself nor hide an
attempt; should the supervisor be gone, the kernel answers ENOSYS.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import select
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
_SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
# _IOWR('!', 0, struct seccomp_notif) and _IOWR('!', 1, struct seccomp_notif_resp)
_NOTIF = struct.Struct("=QII iIQ6Q")  # id, pid, flags, seccomp_data (nr, arch, ip, args)
_RESP = struct.Struct("=QqiI")  # id, val, error, flags
_IOCTL_RECV = 0xC0000000 | _NOTIF.size << 16 | 0x21 << 8 | 0
_IOCTL_SEND = 0xC0000000 | _RESP.size << 16 | 0x21 << 8 | 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_watching(program: bytes, seccomp_nr: int) -> int:
    """Install `program` on this process and return its notification listener."""
    if not program or len(program) % 8 or seccomp_nr <= 0:
        raise OSError(errno.EINVAL, "malformed watching seccomp program")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    fd = _libc.syscall(
        ctypes.c_long(seccomp_nr),
        ctypes.c_ulong(_SECCOMP_SET_MODE_FILTER),
        ctypes.c_ulong(_SECCOMP_FILTER_FLAG_NEW_LISTENER),
        ctypes.byref(prog),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp(NEW_LISTENER): {os.strerror(err)}")
    return int(fd)


def receive(listener: int) -> tuple[int, int]:
    """The next attempt: (notification id, system call number). OSError if it went away."""
    buf = bytearray(_NOTIF.size)
    fcntl.ioctl(listener, _IOCTL_RECV, buf, True)
    fields = _NOTIF.unpack(buf)
    return fields[0], fields[3]


def answer(listener: int, notification: int, *, allow: bool) -> None:
    """Let the attempt proceed (`allow`), or fail it with EPERM; a target gone is no error."""
    if allow:
        resp = _RESP.pack(notification, 0, 0, _SECCOMP_USER_NOTIF_FLAG_CONTINUE)
    else:
        resp = _RESP.pack(notification, 0, -errno.EPERM, 0)
    try:
        fcntl.ioctl(listener, _IOCTL_SEND, bytearray(resp), True)
    except OSError as e:
        if e.errno != errno.ENOENT:  # the process was killed while it waited
            raise


class Watches:
    """The supervisor's side: the listener of each watching worker, and the answers.

    `mode` is the function's `child_processes` policy ("alert" or "block");
    `names` maps system call numbers to names for the report; `report(pid,
    seen)` is told of each attempt made by the worker under the worker's
    parent `pid` (the supervisor turns the first one of each call into a
    `policy` message to the gateway), before the attempt is answered.
    """

    def __init__(
        self,
        mode: str,
        names: dict[int, str],
        poller: select.poll,
        report: Callable[[int, str], None],
    ) -> None:
        self._allow = mode == "alert"
        self._names = names
        self._poller = poller
        self._report = report
        self._pid_of: dict[int, int] = {}
        self._fd_of: dict[int, int] = {}

    def add(self, pid: int, fd: int) -> None:
        if pid in self._fd_of:  # one listener per worker: anything more is not ours
            os.close(fd)
            return
        self._pid_of[fd] = pid
        self._fd_of[pid] = fd
        self._poller.register(fd, select.POLLIN)

    def has(self, pid: int) -> bool:
        return pid in self._fd_of

    def owns(self, fd: int) -> bool:
        return fd in self._pid_of

    def on_event(self, fd: int, events: int) -> None:
        pid = self._pid_of[fd]
        if events & select.POLLIN:
            try:
                notification, nr = receive(fd)
            except OSError:
                notification = -1  # the process went away before we read it
            if notification >= 0:
                try:
                    self._report(pid, self._names.get(nr, f"system call {nr}"))
                finally:
                    with contextlib.suppress(OSError):
                        answer(fd, notification, allow=self._allow)
                return
        if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            self.drop(pid)  # no process uses the filter any more

    def drop(self, pid: int) -> None:
        fd = self._fd_of.pop(pid, None)
        if fd is None:
            return
        del self._pid_of[fd]
        with contextlib.suppress(KeyError, ValueError):
            self._poller.unregister(fd)
        os.close(fd)
