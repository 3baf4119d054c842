"""A test function that tries system calls the sandbox must refuse, and reports errno."""

import ctypes
import os
import socket

libc = ctypes.CDLL(None, use_errno=True)
# struct user_desc: entry 0, base 0, limit 0xfffff; seg_32bit, limit_in_pages, useable
_LDT_ENTRY = (ctypes.c_uint32 * 4)(0, 0, 0xFFFFF, 0x51)
_PAIR = (ctypes.c_int * 2)()

CALLS = {
    "unshare_net": lambda: libc.unshare(0x40000000),
    "unshare_user": lambda: libc.unshare(0x10000000),
    "unshare_mount": lambda: libc.unshare(0x00020000),
    "ptrace_attach_1": lambda: libc.ptrace(16, 1, 0, 0),
    "mount_tmpfs": lambda: libc.mount(b"tmpfs", b"/fn", b"tmpfs", 0, None),
    "keyctl": lambda: libc.syscall(250, 0, 0, 0, 0),
    "bpf": lambda: libc.syscall(321, 0, 0, 0),
    "io_uring_setup": lambda: libc.syscall(425, 1, 0),
    "setns": lambda: libc.setns(0, 0),
    "chroot": lambda: libc.chroot(b"/tmp"),
    # socket(AF_NETLINK | 1 << 32, SOCK_RAW): the kernel ignores the high bits
    "netlink_high_bits": lambda: libc.syscall(41, ctypes.c_long((1 << 32) | 16), 3, 0),
    "vsock_high_bits": lambda: libc.syscall(41, ctypes.c_long((1 << 32) | 40), 1, 0),
    # modify_ldt(1, ...): a flat 32-bit data segment in a local descriptor table of its own
    "modify_ldt": lambda: libc.syscall(154, 1, _LDT_ENTRY, 16),
    # socketpair(AF_NETLINK, SOCK_RAW): the kernel makes the family's socket (loading its
    # module if need be) before it finds the family has no pairs
    "socketpair_netlink": lambda: libc.syscall(53, 16, 3, 0, _PAIR),
    # memfd_secret(0): memory taken out of the kernel's direct map
    "memfd_secret": lambda: libc.syscall(447, 0),
    # open_tree_attr(AT_FDCWD, "/tmp", OPEN_TREE_CLOEXEC, NULL, 0): open_tree's twin (6.15)
    "open_tree_attr": lambda: libc.syscall(467, -100, b"/tmp", 0x80000, None, 0),
}


def handler(event, context):
    out = {}
    for name, call in CALLS.items():
        ctypes.set_errno(0)
        rc = call()
        out[name] = {"rc": rc, "errno": ctypes.get_errno()}
    for family, label in ((socket.AF_NETLINK, "netlink"), (socket.AF_PACKET, "packet")):
        try:
            socket.socket(family, socket.SOCK_RAW).close()
            out[label] = "opened"
        except OSError as e:
            out[label] = e.errno
    with open("/proc/self/status") as f:
        out["seccomp"] = next(ln.split()[1] for ln in f if ln.startswith("Seccomp:"))
    pid = os.fork()  # ordinary forks (clone without namespace flags) still work
    if pid == 0:
        os._exit(7)
    out["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return out
