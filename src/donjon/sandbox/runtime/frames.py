"""Length-prefixed frames over a blocking stream socket: 4-byte big-endian length."""

from __future__ import annotations

import select
import struct

from . import jsonwire
from .callwait import CallWait

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .sockets import Socket

MAX_FRAME = 64 * 1024 * 1024
_LEN = struct.Struct(">I")


class FrameError(Exception):
    pass


def recv_exact(sock: Socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise FrameError("peer closed the channel")
        got += k
    return bytes(buf)


def recv_frame(sock: Socket) -> bytes:
    (size,) = _LEN.unpack(recv_exact(sock, 4))
    if size > MAX_FRAME:
        raise FrameError(f"frame of {size} bytes is over the limit")
    return recv_exact(sock, size)


def send_frames(sock: Socket, *payloads: bytes) -> None:
    parts = []
    for payload in payloads:
        parts.append(_LEN.pack(len(payload)))
        parts.append(payload)
    sock.sendall(b"".join(parts))


def send_reply(sock: Socket, head: bytes, body: bytes, end: bytes) -> None:
    """`send_frames` of a warm call's reply (its head, body and end-of-call frame)."""
    pack = _LEN.pack
    sock.sendall(b"".join((pack(len(head)), head, pack(len(body)), body, pack(len(end)), end)))


def send_json(sock: Socket, obj: Any) -> None:
    """One control message on a SOCK_SEQPACKET socket."""
    sock.send(jsonwire.dumps(obj, compact=True).encode())


class FrameReader:
    """Frames from a persistent stream socket, read in as few `recv` calls as it takes.

    A warm worker's channel (call.py `serve_channel`) carries one call at a time:
    the gateway sends a call's frames in one write and nothing more until the
    worker answers, so whatever one `recv` returns belongs to the current message.

    It waits for input in `poll`, then reads with `recv`. The channel's one socket
    carries the replies too, and when the gateway reads one the kernel wakes
    every sleeper on this socket's wait queue to say it may write again
    (`unix_write_space`); asleep in `recv` by then, the worker would wake for
    nothing and sleep again, two wake-ups a call. `poll`'s wait is keyed to
    POLLIN, so that wake-up passes it by (docs/performance.md, "The warm worker:
    one wake-up per call"; bench/worker_wakeups.py).

    `next_call` waits for a call's frames with every signal blocked while it
    sleeps (callwait.py: no function code between calls); `frame` and `frames`,
    which a call itself reads through (`context.invoke`), wait as the call's own
    signal mask says.
    """

    def __init__(self, sock: Socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._pos = 0
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        self._input = poller.poll
        self._between_calls = CallWait(sock.fileno())

    def frame(self) -> bytes:
        return self._read(1, self._input)[0]

    def frames(self, count: int) -> list[bytes]:
        """The next `count` frames, read as they come."""
        return self._read(count, self._input)

    def next_call(self) -> list[bytes]:
        """A warm call's message, its three frames (token, context, event), waited for
        with every signal blocked."""
        return self._read(3, self._between_calls)

    def _read(self, count: int, wait: Callable[[], object]) -> list[bytes]:
        out: list[bytes] = []
        buf = self._buf
        while True:
            pos = self._pos
            avail = len(buf) - pos
            need = 4
            if avail >= 4:
                (size,) = _LEN.unpack_from(buf, pos)
                if size > MAX_FRAME:
                    raise FrameError(f"frame of {size} bytes is over the limit")
                need = 4 + size
                if avail >= need:
                    out.append(bytes(buf[pos + 4 : pos + need]))
                    self._pos = pos + need
                    if len(out) < count:
                        continue
                    if self._pos == len(buf):
                        buf.clear()
                        self._pos = 0
                    return out
            wait()  # until input, the channel's end or an error: recv then says
            chunk = self._sock.recv(max(65536, need - avail))
            if not chunk:
                raise FrameError("peer closed the channel")
            if self._pos:
                del buf[: self._pos]
                self._pos = 0
            buf += chunk
