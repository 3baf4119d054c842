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

import ctypes
import errno
import fcntl
import os
import select
import struct

from . import lowlevel, sockets

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
_SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
# _IOWR('!', 0, struct seccomp_notif) and _IOWR('!', 1, struct seccomp_notif_resp)
_NOTIF = struct.Struct("=QII iIQ6Q")  # id, pid, flags, seccomp_data (nr, arch, ip, args)
_RESP = struct.Struct("=QqiI")  # id, val, error, flags
_IOCTL_RECV = 0xC0000000 | _NOTIF.size << 16 | 0x21 << 8 | 0
_IOCTL_SEND = 0xC0000000 | _RESP.size << 16 | 0x21 << 8 | 1

#: The worker's first message when watched, carrying the listener (worker.py).
_WATCH = b'{"op": "watch"}'

_libc = lowlevel.libc("syscall")  # looked up once, in the supervisor
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
    """The supervisor's side: each watching worker's listener, and the answers.

    `mode` is the function's `child_processes` policy; with "allow" nothing is
    watched. `names` maps system call numbers to names for the report;
    `call_of(pid)` is the call id the worker under its parent `pid` serves
    (None outside calls); `send(message)` goes to the gateway. The first
    attempt of each call becomes one `policy` message, sent before the
    attempt is answered (EPERM for block, "continue" for alert).
    """

    def __init__(
        self,
        mode: str,
        names: dict[int, str],
        poller: select.poll,
        call_of: Callable[[int], int | None],
        send: Callable[[dict[str, Any]], None],
    ) -> None:
        self.enabled = mode in ("alert", "block")
        self._mode = mode
        self._names = names
        self._poller = poller
        self._call_of = call_of
        self._send = send
        self._pid_of: dict[int, int] = {}
        self._fd_of: dict[int, int] = {}
        #: workers that have sent their first message (the listener comes first, or never)
        self._spoke: set[int] = set()
        #: hand-off socket -> (pid, socket) of a worker handed its call before its listener
        self._awaiting: dict[int, tuple[int, sockets.Socket]] = {}
        #: calls whose `policy` message is sent
        self._reported: set[int] = set()

    def take(self, pid: int, data: bytes, fds: list[int]) -> bool:
        """Was this message the worker's listener (its first message, before its import)?"""
        ours = self.enabled and pid not in self._spoke and data == _WATCH and len(fds) == 1
        self._spoke.add(pid)
        if ours and pid not in self._fd_of:
            self._pid_of[fds[0]] = pid
            self._fd_of[pid] = fds[0]
            self._poller.register(fds[0], select.POLLIN)
        else:
            for fd in fds:  # nothing else is ever sent with a descriptor
                os.close(fd)
        return ours

    def ready(self, pid: int) -> bool:
        """May the worker under `pid` take calls (its listener is held, when watched)?"""
        return not self.enabled or pid in self._fd_of

    def hand_over(self, pid: int, sock: sockets.Socket) -> bool:
        """A worker was handed its call; True if its socket is kept here until its
        listener arrives (the caller must not close it), else the caller closes it."""
        if not self.enabled or pid in self._spoke:
            return False
        self._awaiting[sock.fileno()] = (pid, sock)
        self._poller.register(sock.fileno(), select.POLLIN)
        return True

    def owns(self, fd: int) -> bool:
        return fd in self._pid_of or fd in self._awaiting

    def on_event(self, fd: int, events: int) -> None:
        if fd in self._awaiting:
            self._on_late_listener(fd)
            return
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
                    try:
                        answer(fd, notification, allow=self._mode == "alert")
                    except OSError:
                        pass
                return
        if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            self._close_listener(pid)  # no process uses the filter any more

    def call_ended(self, call_id: int) -> None:
        self._reported.discard(call_id)

    def drop(self, pid: int) -> None:
        """The worker under `pid` is reaped."""
        self._spoke.discard(pid)
        self._close_listener(pid)
        for fd, (waiting, sock) in list(self._awaiting.items()):
            if waiting == pid:
                del self._awaiting[fd]
                try:
                    self._poller.unregister(fd)
                except (KeyError, ValueError):
                    pass
                sock.close()

    def _report(self, pid: int, seen: str) -> None:
        call_id = self._call_of(pid)
        if call_id is None or call_id in self._reported:
            return  # outside any call (its import), or already said for this call
        self._reported.add(call_id)
        self._send(
            {"op": "policy", "id": call_id, "policy": "child_processes", "action": self._mode}
            | {"seen": seen}
        )

    def _on_late_listener(self, fd: int) -> None:
        pid, sock = self._awaiting.pop(fd)
        self._poller.unregister(fd)
        try:
            data, fds, _flags, _addr = sockets.recv_fds(sock, 65536, 1, sockets.MSG_DONTWAIT)
        except BlockingIOError:
            self._awaiting[fd] = (pid, sock)
            self._poller.register(fd, select.POLLIN)
            return
        except OSError:
            data, fds = b"", []
        if data or fds:  # not the end of a worker since reaped (its pid may come again)
            self.take(pid, data, fds)
        sock.close()

    def _close_listener(self, pid: int) -> None:
        fd = self._fd_of.pop(pid, None)
        if fd is None:
            return
        del self._pid_of[fd]
        try:
            self._poller.unregister(fd)
        except (KeyError, ValueError):
            pass
        os.close(fd)
