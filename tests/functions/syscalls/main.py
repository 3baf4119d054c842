"""A test function that tries system calls the sandbox must refuse, and reports errno."""

import ctypes
import os
import socket
import struct

libc = ctypes.CDLL(None, use_errno=True)
# struct user_desc: entry 0, base 0, limit 0xfffff; seg_32bit, limit_in_pages, useable
_LDT_ENTRY = (ctypes.c_uint32 * 4)(0, 0, 0xFFFFF, 0x51)
_PAIR = (ctypes.c_int * 2)()
_BUF = ctypes.create_string_buffer(4096)
# struct mnt_id_req {size, spare, mnt_id, param}: every mount below the root (LSMT_ROOT)
_MOUNTS = struct.pack("=IIQQ", 24, 0, 0xFFFFFFFFFFFFFFFF, 0)
# struct xattr_args {value, size, flags} for a "user." attribute of an empty file
_XATTR = struct.pack("=QII", 0, 0, 0)
_NOTE = b"/tmp/syscalls-note"
libc.mmap.restype = ctypes.c_void_p
_PAGE = ctypes.c_void_p(libc.mmap(None, 4096, 3, 0x22, -1, 0))  # PROT_RW, private anonymous
_SIZE = ctypes.c_uint32(4096)

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
    # Calls of Linux 6.8 to 6.17 that libseccomp 2.5 does not know (so denied by number):
    # the mount table as listmount/statmount give it, by mount id (the host paths of the
    # mounts' sources, as /proc/self/mountinfo shows them)
    "listmount": lambda: libc.syscall(458, _MOUNTS, _BUF, 64, 0),
    "statmount": lambda: libc.syscall(457, _MOUNTS, _BUF, 4096, 0),
    # sealing a mapping of its own; the LSMs of the host, and a process's LSM attributes
    "mseal": lambda: libc.syscall(462, _PAGE, 4096, 0),
    "lsm_list_modules": lambda: libc.syscall(461, _BUF, ctypes.byref(_SIZE), 0),
    "lsm_get_self_attr": lambda: libc.syscall(459, 100, _BUF, ctypes.byref(_SIZE), 0),
    "lsm_set_self_attr": lambda: libc.syscall(460, 100, _BUF, 0, 0),
    # extended attributes and inode flags by directory descriptor and path
    "setxattrat": lambda: libc.syscall(463, -100, _NOTE, 0, b"user.a", _XATTR, 16),
    "getxattrat": lambda: libc.syscall(464, -100, _NOTE, 0, b"user.a", _XATTR, 16),
    "listxattrat": lambda: libc.syscall(465, -100, _NOTE, 0, _BUF, 4096),
    "removexattrat": lambda: libc.syscall(466, -100, _NOTE, 0, b"user.a"),
    "file_getattr": lambda: libc.syscall(468, -100, _NOTE, _BUF, 32, 0),
    "file_setattr": lambda: libc.syscall(469, -100, _NOTE, _BUF, 32, 0),
    # IP sockets of protocols other than TCP and UDP: MPTCP and UDP-Lite (the kernel knows
    # both here), SCTP; the protocol with high bits set, which the kernel ignores
    "mptcp": lambda: libc.syscall(41, 2, 1, 262),
    "mptcp6": lambda: libc.syscall(41, 10, 1, 262),
    "mptcp_high_bits": lambda: libc.syscall(41, 2, 1, ctypes.c_long((1 << 32) | 262)),
    "udplite": lambda: libc.syscall(41, 2, 2, 136),
    "udplite6": lambda: libc.syscall(41, 10, 2, 136),
    "sctp": lambda: libc.syscall(41, 2, 1, 132),
    "socketpair_mptcp": lambda: libc.syscall(53, 2, 1, 262, _PAIR),
}
#: What a function does need: TCP and UDP, with the protocol left to the kernel or named.
ALLOWED_SOCKETS = {
    "tcp": (socket.AF_INET, socket.SOCK_STREAM, 0),
    "tcp_named": (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP),
    "udp_named": (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP),
    "unix": (socket.AF_UNIX, socket.SOCK_STREAM, 0),
}


def handler(event, context):
    out = {}
    with open(_NOTE, "w"):
        pass
    out["calls"] = {}
    for name, call in CALLS.items():
        ctypes.set_errno(0)
        rc = call()
        out["calls"][name] = {"rc": rc, "errno": ctypes.get_errno()}
    for family, label in ((socket.AF_NETLINK, "netlink"), (socket.AF_PACKET, "packet")):
        try:
            socket.socket(family, socket.SOCK_RAW).close()
            out[label] = "opened"
        except OSError as e:
            out[label] = e.errno
    for name, (family, kind, protocol) in ALLOWED_SOCKETS.items():
        socket.socket(family, kind, protocol).close()
        out[name] = "opened"
    with open("/proc/self/status") as f:
        out["seccomp"] = next(ln.split()[1] for ln in f if ln.startswith("Seccomp:"))
    pid = os.fork()  # ordinary forks (clone without namespace flags) still work
    if pid == 0:
        os._exit(7)
    out["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return out
