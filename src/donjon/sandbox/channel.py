"""Async framing on the host side of an invocation's call socket (mirrors runtime/frames.py).

A warm worker's persistent channel has its own reader (warmlink.py).
"""

from __future__ import annotations

import asyncio
import socket
import struct

__all__ = [
    "ChannelClosed",
    "read_frames",
    "send_with_fd",
    "write_frames",
]

_LEN = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024


class ChannelClosed(Exception):
    """The sandbox closed the channel before a whole reply arrived."""


async def write_frames(sock: socket.socket, *payloads: bytes) -> None:
    loop = asyncio.get_running_loop()
    parts = []
    for payload in payloads:
        parts.append(_LEN.pack(len(payload)))
        parts.append(payload)
    await loop.sock_sendall(sock, b"".join(parts))


async def read_frames(sock: socket.socket, count: int, limits: tuple[int, ...] = ()) -> list[bytes]:
    """Read `count` frames, frame i at most limits[i] bytes; `ChannelClosed` on an early end
    or an oversized frame. The far end may be function code: it decides nothing here."""
    loop = asyncio.get_running_loop()
    buf = bytearray()
    frames: list[bytes] = []
    pos = 0
    while len(frames) < count:
        while True:
            if len(buf) - pos >= 4:
                (size,) = _LEN.unpack_from(buf, pos)
                limit = limits[len(frames)] if len(frames) < len(limits) else MAX_FRAME
                if size > limit:
                    raise ChannelClosed(f"reply frame of {size} bytes is over its {limit} limit")
                if len(buf) - pos - 4 >= size:
                    frames.append(bytes(buf[pos + 4 : pos + 4 + size]))
                    pos += 4 + size
                    break
            chunk = await loop.sock_recv(sock, 262144)
            if not chunk:
                raise ChannelClosed("the sandbox closed the channel")
            buf += chunk
    return frames


def _settle_once(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def send_with_fd(sock: socket.socket, msg: bytes, fd: int | None) -> None:
    """One control message carrying `fd`; waits while the supervisor's queue is full."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            if fd is None:
                sock.send(msg)
            else:
                socket.send_fds(sock, [msg], [fd])
            return
        except BlockingIOError:
            writable: asyncio.Future[None] = loop.create_future()
            loop.add_writer(sock.fileno(), _settle_once, writable)
            try:
                await writable
            finally:
                loop.remove_writer(sock.fileno())
