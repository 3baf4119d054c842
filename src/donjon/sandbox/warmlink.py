"""The gateway's persistent channel to a warm worker, and the call page its supervisor reads.

A warm sandbox gets one stream socket to its worker when it starts (handed
over once: boot message, supervisor, worker) instead of a socketpair, two
SCM_RIGHTS hops, a ``done`` message and an exit report per call. One call at
a time runs on it. The gateway writes a call as three frames in one send:
the call's token (16 random bytes), its context and its event. The worker
answers with the reply's head and body and, once it has ended what the call
started, an end-of-call frame: ``END`` followed by the same token. A
``context.invoke`` request (subcalls.py) is answered on the channel as before.

The worker runs the function's code, so it is its function's own trust
domain: anything it writes is checked, and a breach is its own fault.

- A frame over its limit (the reply caps of replies.py), a head that is
  neither a request nor a reply followed by the end frame with this call's
  token (a second reply, garbage, an end for another call), or bytes after
  the end frame: `ChannelViolation`. The call fails as `FunctionCrashed`
  and the sandbox is closed; the next call gets a fresh one.
- Bytes while no call is in flight (a thread the call left behind, a reply
  for a call that has not come): the sandbox is closed at once
  (`on_broken`), before it is given another call.
- The channel's end (the worker died, or closed or replaced the socket):
  `ChannelEnded`; the instance waits for the supervisor's report of the
  worker's end (killed at the call's deadline at the latest) to say why.

The token is unpredictable and new per call, so nothing the worker wrote for
an earlier call, or before it read this one, can end this call; only code
that reads the runtime's memory during the call can, and that is the
function answering its own caller. No reply is ever read for another call:
the gateway sends the next call only after this one's end frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import socket
import struct
from collections.abc import Callable

from donjon.sandbox.replies import MAX_HEAD, MAX_RESULT
from donjon.sandbox.subcalls import SubCall, answer, is_request

__all__ = ["END", "TOKEN_BYTES", "CallPage", "ChannelEnded", "ChannelViolation", "WarmLink"]

#: How the end-of-call frame starts (runtime/call.py writes it); no JSON head does.
END = b"\x00end:"
TOKEN_BYTES = 16
_LEN = struct.Struct(">I")
_CHUNK = 262144
#: The most the gateway buffers of a call's frames (a reply at its caps, and slack).
_MAX_BUFFERED = MAX_HEAD + MAX_RESULT + 2 * _CHUNK
#: The call page (runtime/callpage.py has the layout).
_PAGE_SIZE = 4096
_PAGE_CALL = struct.Struct("<QdQ")
_PAGE_DOZING = 24


class ChannelViolation(Exception):
    """The worker broke the channel's protocol: the function's fault."""


class ChannelEnded(Exception):
    """The channel closed during a call (the worker died or closed it)."""


class CallPage:
    """The page of shared memory the supervisor reads the call in flight from."""

    def __init__(self) -> None:
        self.fd = os.memfd_create("donjon-calls", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, _PAGE_SIZE)
        self._map = mmap.mmap(self.fd, _PAGE_SIZE)
        self._begun = 0

    def begin(self, call_id: int, deadline: float) -> bool:
        """Note call `call_id` (deadline on the monotonic clock); True if the
        supervisor dozes and must be woken."""
        self._begun += 1
        _PAGE_CALL.pack_into(self._map, 0, 0, deadline, self._begun)
        _PAGE_CALL.pack_into(self._map, 0, call_id, deadline, self._begun)  # the id last
        if self._map[_PAGE_DOZING]:
            self._map[_PAGE_DOZING] = 0
            return True
        return False

    def end(self) -> None:
        struct.pack_into("<Q", self._map, 0, 0)

    def close_fd(self) -> None:
        """The supervisor has its copy: the gateway keeps only the mapping."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        self.close_fd()
        with contextlib.suppress(BufferError):
            self._map.close()


class WarmLink:
    """The gateway's end of one warm worker's channel (see the module)."""

    def __init__(self, sock: socket.socket, on_broken: Callable[[str], None]) -> None:
        self._sock = sock
        sock.setblocking(False)
        self._on_broken = on_broken
        self._buf = bytearray()
        self._pos = 0
        self._in_call = False
        self._ended = False
        self._overflow = False
        self._waiter: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        self.replied = False  # whether the call in flight has read a reply

    def _readable(self) -> None:
        try:
            data = self._sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._ended = True
            self._stop_reading()
        elif not self._in_call:
            self._stop_reading()
            self._on_broken("the function's worker wrote on its channel outside any call")
            return
        else:
            self._buf += data
            if len(self._buf) - self._pos > _MAX_BUFFERED:
                self._overflow = True
                self._stop_reading()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._ended and not self._in_call:
            self._on_broken("the function's worker closed its channel")

    def _stop_reading(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._sock.fileno())

    def _take(self, limit: int) -> bytes | None:
        """The next frame if it is whole in the buffer, else None; over `limit`, a violation."""
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 4:
            return None
        (size,) = _LEN.unpack_from(buf, pos)
        if size > limit:
            raise ChannelViolation(f"a frame of {size} bytes, over its {limit} limit")
        if avail < 4 + size:
            return None
        out = bytes(buf[pos + 4 : pos + 4 + size])
        self._pos = pos + 4 + size
        if self._pos == len(buf):
            buf.clear()
            self._pos = 0
        return out

    async def _frame(self, limit: int) -> bytes:
        while True:
            out = self._take(limit)
            if out is not None:
                return out
            if self._overflow:
                raise ChannelViolation("more than a reply's worth of frames")
            if self._ended:
                raise ChannelEnded("the channel closed")
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def call(
        self, meta: bytes, event: bytes, subcalls: SubCall | None
    ) -> tuple[bytes, bytes]:
        """Send one call; its reply's head and body once its end-of-call frame is read."""
        if self._in_call or self._ended:
            raise ChannelEnded("the channel is not free")
        token = os.urandom(TOKEN_BYTES)
        self._in_call = True
        self.replied = False
        pack = _LEN.pack
        message = (pack(TOKEN_BYTES), token, pack(len(meta)), meta, pack(len(event)), event)
        await self._loop.sock_sendall(self._sock, b"".join(message))
        head = await self._frame(MAX_HEAD)
        # A reply comes in one write: its body and end are most often read with its head,
        # and taken from the buffer without a coroutine each (`_frame` does the same).
        body = self._take(MAX_RESULT)
        if body is None:
            body = await self._frame(MAX_RESULT)
        while is_request(head):  # context.invoke: answer, then read on
            ahead, abody = await answer(head, body, subcalls)
            msg = _LEN.pack(len(ahead)) + ahead + _LEN.pack(len(abody)) + abody
            await self._loop.sock_sendall(self._sock, msg)
            head = await self._frame(MAX_HEAD)
            body = await self._frame(MAX_RESULT)
        self.replied = True
        end = self._take(len(END) + TOKEN_BYTES)
        if end is None:
            end = await self._frame(len(END) + TOKEN_BYTES)
        if end != END + token:
            raise ChannelViolation("its reply was not followed by this call's end of call")
        if len(self._buf) > self._pos:
            raise ChannelViolation("it wrote more after its end of call")
        self._in_call = False
        return head, body

    def close(self) -> None:
        self._stop_reading()
        self._in_call = True  # nothing more is read or reported
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._ended = True
        self._sock.close()
