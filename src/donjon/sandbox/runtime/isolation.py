"""What a worker's namespace gets before any function code: one call cannot reach another.

Run in the short-lived parent that made the worker's pid and mount namespace
(`before_fork`, no call data ever enters it) and in the worker itself
(`in_worker` and `enter_domain`, before the handler is imported):

- the out-of-memory killer's choice: the supervisor is kept out of it by the
  host (oom_score_adj -1000); a worker raises its own to the maximum, so when
  memory runs out it is a call that dies, never the sandbox;
- /proc read-only in the worker's mount namespace (the supervisor's view is
  writable so that workers can make the change above; function code never
  can: its /proc is read-only, and it holds no capability to remount it);
- the sandbox's devpts hidden: a call cannot take the host's ptys;
- a memory and a pids cgroup of the call's own, when the host gave the
  supervisor them: what a call's socket buffers, memfds and pipes hold is
  charged to it alone, and its processes count against its own share only;
- a /proc that shows only the worker itself, and a Landlock domain of its own
  (see landlock.py) where the kernel has Landlock.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import ctypes
import os
import resource

from . import landlock, lowlevel

_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_MOVE = 8192
_CLONE_NEWCGROUP = 0x02000000
_PR_SET_DUMPABLE = 4
_OOM_SCORE_ADJ_MAX = 1000
#: Descriptors a call may hold (AWS Lambda's figure): it bounds the sockets,
#: memfds, pipes and inotify instances one call can open, and so its share of
#: the host's fs.file-max.
CALL_NOFILE = 1024
_CAP_VERSION_3 = 0x20080522

_libc = lowlevel.libc("mount", "prctl", "unshare", "capget")  # looked up once, in the supervisor


def _mount(
    source: bytes | None, target: bytes, fstype: bytes | None, flags: int, data: bytes | None
) -> None:
    if _libc.mount(source, target, fstype, flags, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount({target.decode()}): {os.strerror(err)}")


def _set_dumpable(value: int) -> None:
    if _libc.prctl(_PR_SET_DUMPABLE, ctypes.c_ulong(value), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_DUMPABLE): {os.strerror(err)}")


def raise_oom_score() -> None:
    """This process (and what it forks) is the first the out-of-memory killer takes.

    Its /proc files belong to root while it is not dumpable; it is made dumpable
    only for the write, before it holds anything of a call.
    """
    _set_dumpable(1)
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, str(_OOM_SCORE_ADJ_MAX).encode())
        finally:
            os.close(fd)
    finally:
        _set_dumpable(0)


def before_fork() -> None:
    """In the worker's new mount namespace, before the worker is forked."""
    raise_oom_score()
    _mount(
        None,
        b"/proc",
        None,
        _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
        None,
    )
    # No pty for a call: bubblewrap's devpts (ptmxmode 666, no `max`) would let it
    # take every pty of the host. /dev/ptmx points into /dev/pts, now empty.
    _mount(
        b"tmpfs",
        b"/dev/pts",
        b"tmpfs",
        _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
        b"size=0,nr_inodes=1,mode=0555",
    )


def join_cgroup(procs_fds: tuple[int, ...]) -> None:
    """Move this process into the cgroups (one per hierarchy) whose `cgroup.procs` the
    host opened for it, then into a cgroup namespace rooted there: the call sees its
    cgroups as `/`."""
    for fd in procs_fds:
        os.write(fd, b"0")
    if _libc.unshare(_CLONE_NEWCGROUP) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWCGROUP): {os.strerror(err)}")


def effective_capabilities() -> int:
    """The effective set, by capget(2) (for workers with no /proc to read it from)."""
    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    if _libc.capget(header, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capget: {os.strerror(err)}")
    return int(data[0]) | int(data[3]) << 32


def in_worker() -> None:
    """In the worker, after its own /tmp is mounted, before `enter_domain`.

    The /proc of its own comes with Landlock too: a domain refuses only what a
    ptrace check guards, and a concurrent call's `cmdline` (whatever it wrote over
    its arguments: a process title, say), `stat` and `status` are behind none.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = min(CALL_NOFILE, hard) if hard != resource.RLIM_INFINITY else CALL_NOFILE
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, limit), limit))
    own_proc_only()


def enter_domain(landlock_abi: int) -> None:
    """The worker's Landlock domain, if the kernel has Landlock: after every mount change
    of the worker's (a domain refuses them), before the call filter and the handler."""
    if landlock_abi >= 1:
        landlock.restrict_self(landlock_abi)


#: Host-wide /proc files a function may read in the /proc of its own.
_GLOBAL_PROC_FILES = (
    "cpuinfo",
    "meminfo",
    "stat",
    "uptime",
    "loadavg",
    "version",
    "filesystems",
    "sysvipc",
    "sys",
    "self",
    "thread-self",
)


def own_proc_only() -> None:
    """/proc becomes a read-only tmpfs holding this worker's own entries as `self` and
    a few host-wide files, so no other process shows at all.

    (A procfs of the worker's own pid namespace cannot be mounted under bubblewrap:
    its covers of /proc/sys and others are locked mounts, and the kernel refuses a
    new procfs that would reveal what they hide.)
    """
    own = os.readlink("/proc/self")
    stage = "/tmp/.donjon-proc"  # nosec B108 - the worker's own /tmp, mounted just before
    os.mkdir(stage, 0o700)
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _mount(b"tmpfs", stage.encode(), b"tmpfs", flags, b"size=65536,nr_inodes=64,mode=0700")
    for name in _GLOBAL_PROC_FILES:
        source = f"/proc/{own}" if name in ("self", "thread-self") else f"/proc/{name}"
        target = f"{stage}/{name}"
        if os.path.isdir(source):
            os.mkdir(target)
        elif os.path.exists(source):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o444))
        else:
            continue
        _mount(source.encode(), target.encode(), None, _MS_BIND, None)
    os.symlink("self/mounts", f"{stage}/mounts")
    os.symlink("self/net", f"{stage}/net")  # the worker's own network namespace
    _mount(None, stage.encode(), None, _MS_REMOUNT | _MS_RDONLY | flags, None)
    _mount(stage.encode(), b"/proc", None, _MS_MOVE, None)
    os.rmdir(stage)
