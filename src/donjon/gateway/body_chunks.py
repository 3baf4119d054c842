"""`BodyChunks`: a large response body goes out a piece at a time, the loop free between.

uvicorn writes a response body to the transport in one `write`, and asyncio's TLS
transport encrypts all of it there and then, on the event loop: 49 MB of a function's
logs (500 entries of 16 KiB of control characters, escaped six-fold) held the loop for
a quarter of a second and more, a 6 MiB result a tenth of that, at every read, and every
other tenant's calls waited. Here a body past `CHUNK` is sent as pieces of `CHUNK`
bytes (`more_body`; the head's Content-Length is unchanged), each in a loop iteration
of its own, and uvicorn's flow control holds the next piece while the client is slow to
read: the response's memory on the wire stays bounded too.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CHUNK", "BodyChunks", "in_pieces", "send_body"]

#: The most of a body encrypted in one loop iteration (about a millisecond of AES-GCM).
CHUNK = 256 * 1024


async def send_body(send: Send, body: bytes | memoryview, more_body: bool = False) -> None:
    """Send `body` as pieces of at most `CHUNK` bytes, each in a loop iteration of its own
    (the last says `more_body`)."""
    view = memoryview(body)
    for start in range(0, len(view), CHUNK):
        end = start + CHUNK
        last = end >= len(view)
        piece = bytes(view[start:end])
        await send(
            {"type": "http.response.body", "body": piece, "more_body": more_body or not last}
        )
        if not last:
            await asyncio.sleep(0)  # the other connections' turn


def in_pieces(send: Send) -> Send:
    """`send`, its response bodies past `CHUNK` bytes sent by `send_body`."""

    async def send_in_pieces(message: Message) -> None:
        body = message.get("body", b"")
        if message["type"] != "http.response.body" or len(body) <= CHUNK:
            await send(message)
            return
        await send_body(send, body, message.get("more_body", False))

    return send_in_pieces


class BodyChunks:
    """Wraps an ASGI app: its response bodies past `CHUNK` bytes are sent in pieces. (The
    gateway's own app does this itself, its hot route with no wrapper: hot_route.py.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, in_pieces(send) if scope["type"] == "http" else send)
