"""The runtime's sockets, from the C module `_socket` alone.

Importing `socket` converts the C module's constants into enums
(AddressFamily, SocketKind, MsgFlag, AddressInfo) and brings `selectors`
(with `math` and `collections`) and `array`: about 2 ms of every sandbox's
start, on its critical path, for nothing the runtime uses. The runtime's
sockets are the C module's own objects (`Socket`, a base class of
`socket.socket`), and the two helpers it needs of `socket`, descriptors sent
and received over a unix socket (SCM_RIGHTS), are written here on `sendmsg`
and `recvmsg`. A function that imports `socket` gets the module as ever.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import struct
from _socket import (
    AF_INET,
    AF_UNIX,
    CMSG_LEN,
    MSG_DONTWAIT,
    SCM_RIGHTS,
    SHUT_WR,
    SOCK_DGRAM,
    SOCK_SEQPACKET,
    SOL_SOCKET,
    socketpair,
)
from _socket import socket as Socket

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "AF_INET",
    "AF_UNIX",
    "MSG_DONTWAIT",
    "SHUT_WR",
    "SOCK_DGRAM",
    "SOCK_SEQPACKET",
    "Socket",
    "recv_fds",
    "send_fds",
    "socketpair",
]

_INT = struct.calcsize("i")


def send_fds(sock: Socket, buffers: list[bytes], fds: list[int], flags: int = 0) -> int:
    """Send `buffers` as one message with the descriptors `fds` (as `socket.send_fds`)."""
    rights = struct.pack(f"{len(fds)}i", *fds)
    return sock.sendmsg(buffers, [(SOL_SOCKET, SCM_RIGHTS, rights)], flags)


def recv_fds(
    sock: Socket, bufsize: int, maxfds: int, flags: int = 0
) -> tuple[bytes, list[int], int, Any]:
    """One message of at most `bufsize` bytes and the descriptors (at most `maxfds`) that
    came with it, its flags and address (as `socket.recv_fds`)."""
    msg, ancdata, msg_flags, addr = sock.recvmsg(bufsize, CMSG_LEN(maxfds * _INT), flags)
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == SOL_SOCKET and kind == SCM_RIGHTS:
            count = len(data) // _INT
            fds += struct.unpack(f"{count}i", data[: count * _INT])
    return msg, fds, msg_flags, addr
