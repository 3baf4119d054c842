"""A response the client stops reading ends its connection (a slow-read attack).

uvicorn's flow control holds a response's next write while the transport's buffer is
past its high-water mark, until the client reads enough of it (body_chunks.py sends a
large body in pieces for that), and nothing ended that wait: a client that asked for a
6 MiB answer and read none of it kept the answer, its task and its buffers in the node
(about 7.7 MiB) for as long as it liked, on each of the 64 connections its address may
hold. Here, while writes are paused, what is still unsent (the transport's buffer and
the kernel's send queue) is looked at every `body_timeout_s` (DONJON_BODY_TIMEOUT_S,
the stall a request's body may make): if the client took none of it since the last look,
the connection is aborted (a close would wait to send what the client does not read),
the cycle sees the disconnect, its send returns and the answer is freed. A client that
reads, however slowly, makes progress: the kernel's queue shrinks even while a full
send buffer keeps the transport's writes paused (Linux wakes a writer only once a third
of the buffer is free, up to 4 MiB: a paused write alone says nothing of progress).
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from donjon.config import ConnectionSettings

__all__ = ["WriteStallProtocol", "unsent_bytes"]


def unsent_bytes(transport: asyncio.Transport) -> int:
    """The bytes written to `transport` the peer has not acknowledged: the transport's
    buffer and the socket's send queue (SIOCOUTQ; just the buffer if it cannot be read)."""
    unsent = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        except (OSError, ValueError):  # closed meanwhile, or no such queue
            return unsent
        unsent += struct.unpack("i", queued)[0]
    return unsent


class WriteStallProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose paused writes must make progress every
    `body_timeout_s`, or the connection ends."""

    limits: ClassVar[ConnectionSettings] = ConnectionSettings()
    _write_timer: asyncio.TimerHandle | None = None
    _unsent_at_look = 0

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._look_later()

    def resume_writing(self) -> None:
        self._cancel_write_timer()
        super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_write_timer()
        super().connection_lost(exc)

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _look_later(self) -> None:
        self._unsent_at_look = unsent_bytes(self.transport)
        self._write_timer = self.loop.call_later(self.limits.body_timeout_s, self._look)

    def _look(self) -> None:
        """Writes still paused a timeout later: the client took some since, or it ends."""
        self._write_timer = None
        if unsent_bytes(self.transport) < self._unsent_at_look:
            self._look_later()
        else:
            self.transport.abort()
