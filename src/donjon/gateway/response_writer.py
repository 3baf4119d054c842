"""The transport as one request's response sees it (connections.py): the head held
until the body's first write, and what the head says noted on its way out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["ResponseWriter"]

# A refusal's head as uvicorn writes it (Starlette's header names are lower-case).
# Only 429, the caller's own limits: a 503 (the node's capacity, an overload shed) is
# no fault of the caller's, and may reach a client carrying many callers' requests.
_REFUSAL = b"HTTP/1.1 429 "
# A body refused for its size: if still arriving, the connection closes after the answer.
_TOO_LARGE = b"HTTP/1.1 413 "
# An interim answer to `Expect: 100-continue`: the response's head is the next write.
_CONTINUE = b"HTTP/1.1 100 "
#: The length of each: a head starts with one if its first 13 bytes are it (a slice and
#: a comparison, as `startswith` answers, without its three calls a response;
#: tests/gateway/test_response_writer.py compares the two).
_STATUS = 13


class ResponseWriter:
    """The transport as one request's cycle sees it: the response head is held until the
    body's first write and sent with it, so a small response costs one TLS record and one
    send instead of two (uvicorn writes the head and the body apart). Whatever is held
    is sent before any later write, before a close, and at the latest on the loop's next
    iteration (a streamed response whose body comes later)."""

    __slots__ = ("_awaits", "_held", "_loop", "_on_refusal", "_on_unread", "_transport", "_writes")

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        on_refusal: Callable[[bytes], None] | None = None,
        on_unread: Callable[[bytes], bytes] | None = None,
        awaits_continue: bool = False,
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._on_refusal = on_refusal
        self._on_unread = on_unread  # a 413, or an answer instead of an awaited 100
        self._awaits = awaits_continue  # the client waits for 100 Continue to send its body
        self._held: bytes | None = None
        self._writes = 0

    def write(self, data: bytes) -> None:
        if not self._writes and data[:_STATUS] == _CONTINUE:
            self._transport.write(data)  # the client sends its body on this: at once
            self._awaits = False
            return
        self._writes += 1
        if self._writes == 1:  # the head: the body may follow at once
            status = data[:_STATUS]
            if self._on_refusal is not None and status == _REFUSAL:
                self._on_refusal(data)
            if self._on_unread is not None and (self._awaits or status == _TOO_LARGE):
                data = self._on_unread(data)
            self._held = data
            self._loop.call_soon(self.flush)
            return
        held, self._held = self._held, None
        self._transport.write(data if held is None else held + data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
