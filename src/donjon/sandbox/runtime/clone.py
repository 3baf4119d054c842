"""One clone(2) with namespace flags, with os.fork()'s semantics for the interpreter.

Python 3.11 has neither os.unshare nor a clone with flags, and a call's
worker must be pid 1 of a new pid namespace with its own mount, IPC and
network namespaces. Done with the os module alone that takes two forks with
an unshare(2) between them (an intermediate process that only makes the
namespaces and waits); this module makes the worker with ONE system call:

    PyOS_BeforeFork()                       # the interpreter's own fork prologue
    pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0)
    PyOS_AfterFork_Child() / PyOS_AfterFork_Parent()

which is exactly what os.fork() does around glibc's fork() (CPython 3.11,
Modules/posixmodule.c), so the interpreter's at-fork work runs: its locks
are re-made in the child, its other threads' states dropped, and the hooks
of os.register_at_fork run (random reseeds its generator in each child).

Why ctypes, and which entry points:
- `ctypes.pythonapi` and `ctypes.PyDLL(None)` are PyDLLs: a call through
  them keeps the GIL. A CDLL call releases the GIL around the foreign call,
  and a clone made without the GIL would leave the child with a GIL held by
  no thread of it. So both the PyOS_* calls and syscall(2) go through PyDLLs.
- A new stack of 0 makes the kernel's clone behave like fork: the child runs
  on a copy of the caller's stack and returns from the same syscall(3).

Invariants the caller keeps (the supervisor does):
- It is single-threaded when it clones (the runtime starts no thread in the
  supervisor; `clone_process` checks /proc/self/task and refuses otherwise).
  glibc's fork() does work that only matters when other threads exist, and a
  raw clone skips it: it takes and re-makes malloc's arena locks and stdio's
  list lock around the fork, and runs C-level pthread_atfork handlers. With
  one thread, no lock can be held by a thread that does not exist in the
  child, and the interpreter's own at-fork hooks (the ones that matter to
  Python code) run through PyOS_*.
- glibc's fork() also sets the child's cached thread id in its thread
  descriptor (CLONE_CHILD_SETTID) and its robust-mutex list. Here the child's
  descriptor keeps the parent's tid, which glibc (2.34 and later; Debian 12
  has 2.36) no longer uses for the calling thread: raise() and
  pthread_kill(pthread_self()) ask the kernel with gettid(2), and
  threading.get_native_id() is gettid(2) too. The robust list is empty in
  the supervisor (it takes no robust mutex). A thread the child starts gets
  a descriptor of its own from pthread_create.
- Flags are checked: only namespace flags known here, never CLONE_VM,
  CLONE_THREAD, CLONE_NEWUSER or anything that would share state with the
  parent; the sandbox's seccomp filter allows these namespaces to the
  supervisor and the call filter denies every one of them to function code.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import ctypes
import os

from . import signals

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
#: The only flags `clone_process` accepts (besides SIGCHLD, which it adds itself).
ALLOWED_FLAGS = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
#: clone's number on the architectures Donjon's sandbox runs on.
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}

_python = ctypes.pythonapi
_python.PyOS_BeforeFork.restype = None
_python.PyOS_BeforeFork.argtypes = []
_python.PyOS_AfterFork_Child.restype = None
_python.PyOS_AfterFork_Child.argtypes = []
_python.PyOS_AfterFork_Parent.restype = None
_python.PyOS_AfterFork_Parent.argtypes = []
_libc = ctypes.PyDLL(None, use_errno=True)  # NOT CDLL: the GIL stays held across the call
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _clone_number() -> int:
    machine = os.uname().machine
    if machine not in _SYS_CLONE:
        raise OSError(38, f"clone: no system call number known for {machine}")
    return _SYS_CLONE[machine]


def single_threaded() -> bool:
    """Is this process a single thread (as /proc/self/task says)?"""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def clone_process(flags: int) -> int:
    """Like os.fork(), with `flags` (namespaces) for the child: 0 in the child, its pid
    in the parent. Raises OSError when the kernel refuses (errno as the kernel said)."""
    if flags & ~ALLOWED_FLAGS:
        raise ValueError(f"clone_process: flags {flags & ~ALLOWED_FLAGS:#x} are not allowed")
    if not single_threaded():
        raise OSError(11, "clone_process: the process must be single-threaded to clone")
    number = _clone_number()
    _python.PyOS_BeforeFork()
    pid = _syscall(
        ctypes.c_long(number),
        ctypes.c_ulong(flags | signals.SIGCHLD),
        ctypes.c_void_p(0),
        ctypes.c_void_p(0),
        ctypes.c_void_p(0),
        ctypes.c_ulong(0),
    )
    if pid == 0:
        _python.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    _python.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone({flags:#x}): {os.strerror(err)}")
    return int(pid)
