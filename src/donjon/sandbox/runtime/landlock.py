"""A Landlock domain per worker: no call can reach another call's processes.

Every call's processes run as the same uid in one procfs, and a process that
executes a program becomes dumpable again, so uid checks and
``PR_SET_DUMPABLE`` cannot keep one call out of another's ``/proc/<pid>``
(``root``, ``fd``, ``environ``, ``mem``). A Landlock domain can: the kernel
refuses every ptrace-access check (which is what guards those entries) from a
process in one domain to a process outside it or in a sibling domain, and the
domain is inherited across fork and execve, so a call's exec'd children carry
it too. Each worker enters a domain of its own; the supervisor has none, so it
still manages every worker, and no worker can touch it.

From ABI 6 the same domain is scoped: abstract unix sockets made outside it
cannot be connected to, and processes outside it cannot be signalled.

The file-system part of the ruleset only handles creating device nodes
(which seccomp refuses anyway), so it restricts nothing a function does with
files; it is there because a ruleset must handle something on ABI 1 to 5.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import ctypes
import os

from . import lowlevel

_SYS_CREATE_RULESET = 444
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_ACCESS_FS_MAKE_CHAR = 1 << 6
_ACCESS_FS_MAKE_BLOCK = 1 << 11
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
_SCOPE_SIGNAL = 1 << 1
#: The first ABI with scopes (abstract unix sockets, signals).
SCOPES_ABI = 6

_libc = lowlevel.libc("syscall", "prctl")  # looked up once, in the supervisor
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


def abi_version() -> int:
    """The kernel's Landlock ABI; 0 when Landlock is not built in or not enabled."""
    rc = _libc.syscall(
        _SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION)
    )
    return max(int(rc), 0)


def restrict_self(abi: int) -> None:
    """Put this process (and all it will start) in a new Landlock domain of its own.

    Needs no_new_privs or CAP_SYS_ADMIN; fails with OSError if the kernel refuses.
    """
    if abi < 1:
        raise OSError(95, "Landlock is not available")
    attr = _RulesetAttr(_ACCESS_FS_MAKE_CHAR | _ACCESS_FS_MAKE_BLOCK, 0, 0)
    size = ctypes.sizeof(_RulesetAttr)
    if abi >= SCOPES_ABI:
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
    else:
        size = 16  # the ABI 1-5 struct: no `scoped` field
    fd = _libc.syscall(
        _SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    try:
        if _libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(fd)


_SYS_ADD_RULE = 445
_RULE_PATH_BENEATH = 1
_ACCESS_FS_READ_FILE = 1 << 2
_ACCESS_FS_READ_DIR = 1 << 3
_PR_SET_NO_NEW_PRIVS = 38
_O_PATH = 0o10000000


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def restrict_reads(allowed: list[str]) -> None:
    """A further domain in which files and directories can be read only beneath `allowed`.

    Used once a handler is imported (read_own_code: block, policy_hooks.py).
    Needs no_new_privs (set here: the worker holds no capability by then).
    Paths that do not exist are skipped.
    """
    handled = _ACCESS_FS_READ_FILE | _ACCESS_FS_READ_DIR
    attr = _RulesetAttr(handled, 0, 0)
    fd = _libc.syscall(
        _SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(16), ctypes.c_uint32(0)
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    try:
        for path in allowed:
            try:
                parent = os.open(path, _O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                access = handled if os.path.isdir(path) else _ACCESS_FS_READ_FILE
                rule = _PathBeneath(access, parent)
                rc = _libc.syscall(
                    _SYS_ADD_RULE,
                    ctypes.c_int(fd),
                    ctypes.c_int(_RULE_PATH_BENEATH),
                    ctypes.byref(rule),
                    ctypes.c_uint32(0),
                )
                if rc != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"landlock_add_rule({path}): {os.strerror(err)}")
            finally:
                os.close(parent)
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")
        if _libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(fd)
