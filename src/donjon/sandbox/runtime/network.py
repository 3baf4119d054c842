"""A network namespace per worker, and what a function granted egress finds in it.

Every worker (one call for isolation `invocation`, the calls of one warm
worker one after another) gets a network namespace of its own, made by the
worker's parent with the worker's pid and mount namespaces: only `lo`, up.
A listener one call opens on 127.0.0.1 is in no other call's namespace, and
it goes with the namespace when the worker exits.

For a function granted egress, the worker's parent (which never runs
function code) also listens on 127.0.0.1:3128 in that namespace and relays
each connection to the node's egress proxy (relay.py); the function finds
`HTTPS_PROXY`/`HTTP_PROXY` pointing there. The proxy's unix socket, which
the host binds into the sandbox at /run/donjon-egress, is hidden from the
worker by an empty tmpfs: only the relay holds a way to it.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct

from . import lowlevel, sockets

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import MutableMapping

CLONE_NEWNET = 0x40000000
#: Where the host binds the directory holding the proxy's socket (sandbox/profile.py).
EGRESS_DIR = "/run/donjon-egress"
PROXY_SOCKET = "proxy.sock"
RELAY_HOST = "127.0.0.1"
RELAY_PORT = 3128
PROXY_URL = f"http://{RELAY_HOST}:{RELAY_PORT}"
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sh"
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8

_libc = lowlevel.libc("mount", "unshare")  # looked up once, in the supervisor


def loopback_up() -> None:
    """Bring `lo` of this (new) network namespace up: 127.0.0.1 and ::1 then exist in it."""
    s = sockets.Socket(sockets.AF_INET, sockets.SOCK_DGRAM)
    try:
        request = struct.pack(_IFREQ, b"lo", 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))
    finally:
        s.close()


def new_network() -> None:
    """Move this process into a fresh network namespace with only `lo`, up.

    Needs CAP_SYS_ADMIN (the namespace) and CAP_NET_ADMIN (the interface) in
    the sandbox's user namespace: the supervisor's children hold both until a
    worker drops every capability.
    """
    if _libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
    loopback_up()


def relay_listener() -> socket.socket:
    """The relay's listening socket, bound before the worker exists (so no function
    code can take the port first). Egress only: `socket` is imported here, not for all."""
    import socket

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((RELAY_HOST, RELAY_PORT))
    listener.listen(64)
    listener.setblocking(False)
    return listener


def egress_dir_fd() -> int:
    """A handle on the directory of the proxy's socket, kept by the relay alone."""
    return os.open(EGRESS_DIR, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def hide_egress_dir() -> None:
    """In the worker (its mounts private): an empty read-only tmpfs over the proxy's socket."""
    flags = _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    data = b"size=0,nr_inodes=1,mode=0555"
    if _libc.mount(b"tmpfs", EGRESS_DIR.encode(), b"tmpfs", flags, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount({EGRESS_DIR}): {os.strerror(err)}")


def proxy_environment(environ: MutableMapping[str, str]) -> None:
    """The standard proxy variables (urllib, requests, httpx read them), and no bypass list."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        environ[name] = PROXY_URL
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        environ.pop(name, None)
