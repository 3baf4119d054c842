"""The few system calls the runtime needs that the os module lacks (via libc)."""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWIPC = 0x08000000
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_VERSION_3 = 0x20080522
_LAST_CAP = 63
CAP_SETPCAP = 8


def libc(*functions: str) -> ctypes.CDLL:
    """The C library, with `functions` looked up now.

    ctypes looks a function up (and makes its foreign-function object) on first
    use, and keeps it on the library object. Modules import this in the supervisor,
    so the functions only workers call are looked up there once: every worker is a
    copy of the supervisor and finds them made, instead of each making its own.
    """
    lib = ctypes.CDLL(None, use_errno=True)
    for name in functions:
        getattr(lib, name)
    return lib


_libc = libc("prctl", "unshare", "mount", "capget", "capset")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def prctl(option: int, arg: int = 0, arg3: int = 0) -> None:
    _check(
        _libc.prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(arg),
            ctypes.c_ulong(arg3),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        f"prctl({option})",
    )


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), f"unshare({flags:#x})")


def private_mounts(tmp_bytes: int) -> None:
    """Fresh, size-capped tmpfs at /tmp and /dev/shm in this (new) mount namespace."""
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount(private /)")
    tmp = f"size={tmp_bytes},mode=1777,nr_inodes=4096".encode()
    _check(_libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, tmp), "mount(/tmp)")
    shm = b"size=1048576,mode=1777,nr_inodes=64"
    _check(
        _libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, shm),
        "mount(/dev/shm)",
    )


def drop_all_capabilities(bounding: int | None = None) -> None:
    """Empty the ambient, bounding, effective, permitted and inheritable sets.

    `bounding` is the current bounding set when the caller knows it (a supervisor
    reads it once, so each call's process need not read /proc again).
    """
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    drop_bounding_set(bounding_set() if bounding is None else bounding)
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def drop_bounding_set(bounding: int) -> None:
    """Drop every capability of `bounding` (the current bounding set) from it.

    The bounding set only limits what an execve(2) or a capset(2) could add: the
    effective and permitted sets of this process keep what they hold. A supervisor
    empties its own once, so the workers it makes inherit it empty and need not
    drop the set again, one prctl(2) per capability, each.
    """
    for cap in range(_LAST_CAP + 1):
        if bounding >> cap & 1:
            prctl(PR_CAPBSET_DROP, cap)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def load_seccomp(program: bytes) -> None:
    """Install a compiled BPF filter on this process (and its future children)."""
    if not program or len(program) % 8:
        raise OSError(22, "malformed seccomp program")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))


def _capabilities() -> tuple[_CapHeader, ctypes.Array[_CapData]]:
    """This process's capability sets as capget(2) gives them, ready for a capset(2)."""
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    return header, data


def drop_ambient_capabilities() -> None:
    """Empty the ambient and inheritable sets; keep the effective and permitted ones.

    Nothing this process ever executes then inherits a capability; its own
    CAP_SYS_ADMIN (effective) is untouched.
    """
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header, data = _capabilities()
    for half in data:
        half.inheritable = 0
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def drop_capability(cap: int) -> None:
    """Remove `cap` from the effective and permitted sets (for good: nothing gives it back).

    The supervisor needs CAP_SETPCAP only to empty its bounding set; once that is
    done it gives it up, keeping CAP_SYS_ADMIN and CAP_NET_ADMIN for its workers.
    """
    header, data = _capabilities()
    half, bit = divmod(cap, 32)
    data[half].effective &= ~(1 << bit)
    data[half].permitted &= ~(1 << bit)
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def children(pid: int) -> list[int]:
    """The pids of `pid`'s children (of every thread of it); [] once it is gone."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        pass
    return out


def alive(pid: int) -> bool:
    """Is `pid` a process that has not exited (not a zombie, not gone)?"""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time used by `pid` (all its threads, and the children it has reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _status_caps(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    return 0


def bounding_set() -> int:
    return _status_caps("CapBnd")
