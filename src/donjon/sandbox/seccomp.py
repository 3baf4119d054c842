"""Seccomp filters for the sandbox, compiled with the system's libseccomp.

Two filters, both "allow unless listed" with EPERM for what is listed:

- the sandbox filter, loaded by bubblewrap before the runtime starts: system
  calls no function needs and that widen the kernel's attack surface
  (ptrace, bpf, keyctl, io_uring, Linux AIO, module loading, ...), every call
  numbered after the newest Donjon names (ENOSYS: calls a later kernel adds), new
  namespaces other than the mount, pid, IPC, network and cgroup namespaces the
  supervisor makes for its workers, and socket families (in socket and
  socketpair) other than unix and IP, and protocols other than TCP and UDP;
- the call filter, loaded by each worker once its private mounts are made
  and before any function code: no more mount, unshare, setns or any
  namespaced clone, and no prctl(PR_SET_PDEATHSIG);
- the watching call filter, the same plus a seccomp user notification for
  every way to make or run a process (fork, vfork, clone without
  CLONE_THREAD, execve, execveat): loaded instead of the call filter when the
  function's `child_processes` policy is alert or block. The supervisor holds
  the notification descriptor and answers each attempt: EPERM (block) or
  "continue" (alert), after reporting it (runtime/watch.py). Should no one
  hold the descriptor, the kernel fails the call with ENOSYS: it fails closed.

Filters stack in the kernel, so the call filter only ever narrows.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterable

from donjon.sandbox.errors import SandboxUnavailable

__all__ = ["Filters", "compile_filters"]

_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000 | errno.EPERM
# clone3 carries its flags in memory, beyond BPF's reach; ENOSYS makes libc fall back
# to clone, whose flags the filter can see.
_ENOSYS = 0x00050000 | errno.ENOSYS
_NOTIFY = 0x7FC00000
_CMP_MASKED_EQ = 7
CLONE_THREAD = 0x00010000
#: Every way to make or run a process; clone only without CLONE_THREAD (threads stay).
PROCESS_CALLS = ("fork", "vfork", "execve", "execveat")

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWIPC = 0x08000000
#: Allowed to the supervisor's children only until the call filter: a worker's
#: parent enters the call's cgroup, then a cgroup namespace rooted there, so the
#: call's /proc/self/cgroup names no slot (runtime/isolation.py).
CLONE_NEWCGROUP = 0x02000000
#: A network namespace per worker (runtime/network.py): made by the worker's parent,
#: refused to calls like the others above.
CLONE_NEWNET = 0x40000000
_NAMESPACE_FLAGS = {
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWTIME": 0x00000080,
}
_ALLOWED_FAMILIES = {1, 2, 10}  # AF_UNIX, AF_INET, AF_INET6
_MAX_FAMILY = 46
#: socket()'s protocol: the family's default (0), IPPROTO_TCP, IPPROTO_UDP. Any other is
#: refused, in every family: MPTCP (262), UDP-Lite (136), SCTP, SMC over IP, ... reach
#: only the worker's loopback, but each is a kernel protocol no function needs.
_ALLOWED_PROTOCOLS = {0, 6, 17}
#: Every allowed protocol is below 1 << 5: a protocol with any bit from there up is refused
#: by one rule per bit, the 32 below by one rule each.
_PROTOCOL_LOW_BITS = 5

#: Never needed by a function; each has been a way into the kernel.
DENIED_ALWAYS = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "perf_event_open",
    "bpf",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "lookup_dcookie",
    "open_by_handle_at",
    "name_to_handle_at",
    "pivot_root",
    "chroot",
    "umount2",
    "setns",
    "syslog",
    "iopl",
    "ioperm",
    "fanotify_init",
    "fanotify_mark",
    # A watch is on the inode, not the mount: on the trees every sandbox shares (the
    # standard library under /usr, the runtime), one tenant's watch saw each file another
    # tenant's function opened. No copy per sandbox is to be had of the host's /usr.
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "mknod",
    "mknodat",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "open_tree_attr",
    "move_mount",
    "mount_setattr",
    "vhangup",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "uselib",
    "nfsservctl",
    "personality",
    # A local descriptor table: for 16-bit and Wine code only; the kernel's entry paths
    # around custom segments have been a way to kernel privilege (CVE-2015-3290).
    "modify_ldt",
    # Memory taken out of the kernel's direct map: each mapping splits the huge pages
    # that map the host's memory, a cost to every process of the host.
    "memfd_secret",
    "quotactl_fd",  # quotactl by descriptor
    # The mount table by mount id: the host paths of the mounts' sources (the staging
    # directories of the runtime and of the function's bundle), as mountinfo shows them.
    "listmount",
    "statmount",
    # The host's security modules, and a process's attributes in them.
    "lsm_list_modules",
    "lsm_get_self_attr",
    "lsm_set_self_attr",
    # Sealing mappings; extended attributes and inode flags by path (Linux 6.10 to 6.17):
    # new kernel code no function needs (the *xattr and ioctl calls stay).
    "mseal",
    "setxattrat",
    "getxattrat",
    "listxattrat",
    "removexattrat",
    "file_getattr",
    "file_setattr",
)
#: Draw on counters the whole host shares and no sandbox can bound: Linux AIO
#: (fs.aio-max-nr, 65,536 events for every process of the host).
DENIED_HOST_COUNTERS = (
    "io_setup",
    "io_submit",
    "io_getevents",
    "io_pgetevents",
    "io_cancel",
    "io_destroy",
)
#: Denied once a call's process has its private /tmp.
DENIED_IN_CALLS = ("mount", "unshare")
#: prctl options denied in calls: the worker's parent-death signal is the
#: platform's (a call that cleared it would outlive its worker's parent).
PR_SET_PDEATHSIG = 1
DENIED_PRCTL_IN_CALLS = (PR_SET_PDEATHSIG,)


#: Calls some libseccomp releases do not know, by number (from 424 on, Linux numbers a new
#: call alike on its architectures, alpha aside): left out, a call would be allowed, and
#: unresolved, the node would not start. Every listed call from 424 on is here: Debian 12's
#: 2.5.4 knows none past Linux 6.7, Debian 11's and Ubuntu 20.04's 2.5.1 none past 5.9.
_NEWER_THAN_LIBSECCOMP = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "mount_setattr": 442,
    "quotactl_fd": 443,
    "memfd_secret": 447,  # nosec B105 - a system call number, no secret
    "statmount": 457,
    "listmount": 458,
    "lsm_get_self_attr": 459,
    "lsm_set_self_attr": 460,
    "lsm_list_modules": 461,
    "mseal": 462,
    "setxattrat": 463,
    "getxattrat": 464,
    "listxattrat": 465,
    "removexattrat": 466,
    "open_tree_attr": 467,
    "file_getattr": 468,
    "file_setattr": 469,
}
#: The calls Linux adds after those above (the first number no release up to 6.18 uses, to
#: a bound a century of new calls will not reach): ENOSYS, as a kernel without them
#: answers, so a library that tries one falls back. Unlisted, a call the kernel gains
#: later (new kernel code no function needs yet) would be allowed by default.
FIRST_UNNAMED = max(_NEWER_THAN_LIBSECCOMP.values()) + 1
UNNAMED_UNTIL = 600
#: What libseccomp answers for a name it does not know at all; a name it knows that this
#: architecture lacks (fork on arm64) resolves to a pseudo number below it, and can be
#: left out: no process can make that call here.
_UNKNOWN_NAME = -1


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class Filters:
    """The compiled BPF programs (raw `struct sock_filter` arrays)."""

    def __init__(
        self,
        sandbox: bytes,
        call: bytes,
        call_watch: bytes = b"",
        process_calls: dict[int, str] | None = None,
        seccomp_nr: int = -1,
    ) -> None:
        self.sandbox = sandbox
        self.call = call
        #: The call filter with process calls sent to the supervisor (child_processes).
        self.call_watch = call_watch
        #: System call number -> name of the calls `call_watch` reports.
        self.process_calls = dict(process_calls or {})
        #: seccomp(2)'s number here: a worker loads `call_watch` with it (runtime/watch.py).
        self.seccomp_nr = seccomp_nr

    def sandbox_fd(self) -> int:
        """A fresh memfd holding the sandbox filter, for one bwrap (--seccomp FD)."""
        fd = os.memfd_create("donjon-seccomp", 0)
        os.write(fd, self.sandbox)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd


class _Compiler:
    def __init__(self) -> None:
        name = ctypes.util.find_library("seccomp")
        if name is None:
            raise SandboxUnavailable(
                "libseccomp is not installed; the sandbox needs it",
                hint="run scripts/setup.sh, or: apt-get install libseccomp2",
            )
        lib = ctypes.CDLL(name, use_errno=True)
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ArgCmp),
        ]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        self._lib = lib

    def compile(
        self,
        deny: Iterable[str],
        *,
        namespaces: bool,
        families: bool,
        deny_newns: bool,
        prctl_options: Iterable[int] = (),
        watch_processes: bool = False,
        unnamed: bool = False,
    ) -> bytes:
        lib = self._lib
        ctx = lib.seccomp_init(_ALLOW)
        if not ctx:
            raise SandboxUnavailable("libseccomp could not create a filter")
        try:
            self._add_rules(
                ctx, deny, namespaces=namespaces, families=families, deny_newns=deny_newns
            )
            for option in prctl_options:
                self._rule(ctx, "prctl", [_ArgCmp(0, _CMP_MASKED_EQ, 0xFFFFFFFF, option)])
            if watch_processes:
                for name in PROCESS_CALLS:
                    self._rule(ctx, name, [], action=_NOTIFY)
                # A namespaced clone is refused above (EPERM outranks a notification).
                self._rule(ctx, "clone", [_ArgCmp(0, _CMP_MASKED_EQ, CLONE_THREAD, 0)], _NOTIFY)
            if unnamed:
                for nr in range(FIRST_UNNAMED, UNNAMED_UNTIL):
                    self._number_rule(ctx, nr, str(nr), [], _ENOSYS)
            return self._export(ctx)
        finally:
            lib.seccomp_release(ctx)

    def _add_rules(
        self, ctx: int, deny: Iterable[str], *, namespaces: bool, families: bool, deny_newns: bool
    ) -> None:
        for name in deny:
            self._rule(ctx, name, [])
        if namespaces:
            flags = list(_NAMESPACE_FLAGS.values())
            if deny_newns:
                flags += [CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWIPC, CLONE_NEWCGROUP, CLONE_NEWNET]
            for flag in flags:
                for call in ("unshare", "clone"):
                    self._rule(ctx, call, [_ArgCmp(0, _CMP_MASKED_EQ, flag, flag)])
            self._rule(ctx, "clone3", [], action=_ENOSYS)
        if families:
            for family in range(_MAX_FAMILY):
                if family not in _ALLOWED_FAMILIES:
                    # The kernel reads the family as a 32-bit int: compare only those
                    # bits, or high bits set by the caller would slip past the rule.
                    # socketpair makes a socket of the family (loading its module)
                    # before it finds the family has no pairs: it is refused alike.
                    for call in ("socket", "socketpair"):
                        self._rule(ctx, call, [_ArgCmp(0, _CMP_MASKED_EQ, 0xFFFFFFFF, family)])
            self._protocol_rules(ctx)

    def _protocol_rules(self, ctx: int) -> None:
        """Refuse socket() and socketpair() (which makes the sockets before it finds IP has
        no pairs) a protocol outside `_ALLOWED_PROTOCOLS`, comparing its 32 bits alone."""
        refused = [(1 << bit, 1 << bit) for bit in range(_PROTOCOL_LOW_BITS, 32)]
        refused += [
            (0xFFFFFFFF, protocol)
            for protocol in range(1 << _PROTOCOL_LOW_BITS)
            if protocol not in _ALLOWED_PROTOCOLS
        ]
        for call in ("socket", "socketpair"):
            for mask, value in refused:
                self._rule(ctx, call, [_ArgCmp(2, _CMP_MASKED_EQ, mask, value)])

    def _export(self, ctx: int) -> bytes:
        fd = os.memfd_create("bpf", 0)
        try:
            if self._lib.seccomp_export_bpf(ctx, fd) != 0:
                raise SandboxUnavailable("libseccomp could not export the filter")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def numbers(self, names: Iterable[str]) -> dict[int, str]:
        """System call numbers of `names` on this architecture (calls it lacks left out)."""
        return {nr: name for name in names if (nr := self._resolve(name)) is not None}

    def _resolve(self, name: str) -> int | None:
        """`name`'s number here, None if this architecture has no such call;
        `SandboxUnavailable` if neither libseccomp nor Donjon knows the name: a rule
        left out would allow the call (the filters deny what they list)."""
        nr: int = self._lib.seccomp_syscall_resolve_name(name.encode())
        if nr == _UNKNOWN_NAME:
            nr = _NEWER_THAN_LIBSECCOMP.get(name, _UNKNOWN_NAME)
        if nr == _UNKNOWN_NAME:
            raise SandboxUnavailable(
                f"the seccomp filter cannot deny {name}: libseccomp does not know that "
                "system call, and a filter without its rule would allow it",
                hint=f"install a newer libseccomp, one that knows {name} (2.6 or later)",
            )
        return nr if nr >= 0 else None

    def _rule(self, ctx: int, name: str, args: list[_ArgCmp], action: int = _ERRNO) -> None:
        nr = self._resolve(name)
        if nr is None:
            return  # not a system call on this architecture
        self._number_rule(ctx, nr, name, args, action)

    def _number_rule(self, ctx: int, nr: int, name: str, args: list[_ArgCmp], action: int) -> None:
        array = (_ArgCmp * len(args))(*args) if args else None
        rc = self._lib.seccomp_rule_add_array(ctx, action, nr, len(args), array)
        if rc != 0:
            raise SandboxUnavailable(f"libseccomp refused the rule for {name} ({rc})")


def compile_filters() -> Filters:
    """Both filters; `SandboxUnavailable` when libseccomp is missing or refuses."""
    compiler = _Compiler()
    sandbox = compiler.compile(
        (*DENIED_ALWAYS, *DENIED_HOST_COUNTERS),
        namespaces=True,
        families=True,
        deny_newns=False,
        unnamed=True,
    )
    call, call_watch = (
        compiler.compile(
            DENIED_IN_CALLS,
            namespaces=True,
            families=False,
            deny_newns=True,
            prctl_options=DENIED_PRCTL_IN_CALLS,
            watch_processes=watch,
        )
        for watch in (False, True)
    )
    return Filters(
        sandbox=sandbox,
        call=call,
        call_watch=call_watch,
        process_calls=compiler.numbers((*PROCESS_CALLS, "clone")),
        seccomp_nr=next(iter(compiler.numbers(("seccomp",))), -1),
    )
