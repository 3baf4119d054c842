"""A warm worker's wait for its next call, with every signal blocked for the wait alone.

Between calls no function code may run (docs/security.md, "No timer runs between
calls either"): a timer the function armed must not have its signal handler run
while the worker waits. The wait is one ppoll(2) whose signal mask blocks every
signal for as long as it sleeps: the kernel sets that mask as the wait begins and
puts the calls' own mask back as it ends, so a signal that came meanwhile stays
pending until the next call's frames arrive (or the channel's end, when the gateway
is closing the sandbox and kills it next). `pthread_sigmask` before and after a
`poll` did the same with two system calls more and about 15,000 instructions more
a call, most of them in making Python sets of the masks (bench/worker_python.py
`--mode callgrind`, bench/worker_syscalls.py).

The set is glibc's `sigfillset`, what `signal.valid_signals()` holds (every signal
but glibc's own two, which its `pthread_sigmask` never blocks either); the kernel
leaves SIGKILL and SIGSTOP out. Like `poll`'s, the wait is keyed to POLLIN: the
write-space wake-up when the gateway reads a reply passes it by (frames.py).

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select

from .lowlevel import libc

_libc = libc("ppoll", "sigfillset")  # looked up once, in the supervisor
#: glibc's sigset_t (1024 bits); the kernel reads the first 8 bytes (_NSIG / 8).
_SIGSET_BYTES = 128


class _PollFd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


class CallWait:
    """Waits, with every signal blocked, until `fd` has input, its end or an error."""

    __slots__ = ("_fds", "_nfds", "_ppoll", "_signals")

    def __init__(self, fd: int) -> None:
        self._fds = (_PollFd * 1)(_PollFd(fd, select.POLLIN, 0))
        self._nfds = ctypes.c_ulong(1)  # nfds_t, passed as what it is
        self._signals = ctypes.create_string_buffer(_SIGSET_BYTES)
        if _libc.sigfillset(self._signals) != 0:
            raise OSError(ctypes.get_errno(), "sigfillset")
        self._ppoll = _libc.ppoll

    def __call__(self) -> None:
        # No timeout (NULL): it returns once there is something to read or say.
        while self._ppoll(self._fds, self._nfds, None, self._signals) < 0:
            err = ctypes.get_errno()
            if err != errno.EINTR:  # (with every signal blocked, only a tracer's stop)
                raise OSError(err, f"ppoll: {os.strerror(err)}")
