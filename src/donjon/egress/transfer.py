"""The bytes of an allowed connection: the ClientHello checked, a tunnel, one HTTP exchange.

Every byte either way is charged to the call (`Call.charge`), so the byte cap
holds across all of a call's connections; a tunnel ends when both directions
are done or one fails (a cap ends both).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from donjon.egress.calls import Call
from donjon.egress.context import SessionContext
from donjon.egress.hello import HelloWatch, client_hello, starts_tls
from donjon.egress.http import (
    BadRequest,
    ProxyRequest,
    content_length,
    forward_head,
    response_length,
    rewrite_response_head,
    status_response,
)

__all__ = ["forward", "relay"]

#: Seconds for a response head (three times a hello's).
HEAD_WAIT_S = 30.0
CHUNK = 64 * 1024


async def _pipe(
    ctx: SessionContext,
    call: Call,
    src: asyncio.StreamReader,
    dst: asyncio.StreamWriter,
    left: int | None = None,
    seen: Callable[[bytes], None] | None = None,
) -> None:
    """Copy `src` to `dst` (at most `left` bytes), charging the call; half-close at the end.
    `seen` is shown each chunk before it goes on (b"" at the end)."""
    limit = ctx.settings.max_bytes_per_call
    while left is None or left > 0:
        chunk = await src.read(CHUNK if left is None else min(CHUNK, left))
        if seen is not None:
            seen(chunk)
        if not chunk:
            break
        call.charge(len(chunk), limit)
        if left is not None:
            left -= len(chunk)
        dst.write(chunk)
        await dst.drain()
    if left is None and dst.can_write_eof():
        with contextlib.suppress(OSError):
            dst.write_eof()


async def _outbound(
    ctx: SessionContext,
    call: Call,
    reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
    request: ProxyRequest | None,
    watch: HelloWatch | None,
) -> None:
    """The client's side of a tunnel. With `request` (a port other than 443), its first
    bytes are read whenever it sends them (the server may speak first) and, if they open
    TLS, must be a ClientHello for the CONNECT host, as on 443: a TLS server on any granted
    port may serve other names too (a shared front end on 8443). While `watch` holds a
    hello the server has not answered, the rest waits for that answer."""
    limit = ctx.settings.max_bytes_per_call
    if request is not None and watch is not None:
        first = await reader.read(CHUNK)
        if starts_tls(first):
            first, rest = await client_hello(reader, request, first)
            watch.hello_sent(rest)
        call.charge(len(first), limit)
        upstream.write(first)
        await upstream.drain()
    if watch is not None and watch.sent:
        more = await watch.after_answer(reader)
        call.charge(len(more), limit)
        upstream.write(more)
        await upstream.drain()
    await _pipe(ctx, call, reader, upstream)


async def relay(
    ctx: SessionContext,
    call: Call,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
    request: ProxyRequest,
    watch: HelloWatch | None = None,
) -> None:
    """Both directions of a tunnel until both ends are done (a cap or an error ends both).
    `watch`: the hello already sent (443); without it, the client's first bytes are read
    for one (`_outbound`)."""
    checked = watch is None
    watch = watch or HelloWatch(request)
    tasks = [
        asyncio.ensure_future(
            _outbound(ctx, call, reader, upstream, request if checked else None, watch)
        ),
        asyncio.ensure_future(_pipe(ctx, call, up_reader, writer, seen=watch.server_bytes)),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def forward(
    ctx: SessionContext,
    call: Call,
    request: ProxyRequest,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
) -> None:
    """One plain-HTTP request in origin form, its body, then the response until it ends."""
    head = forward_head(request)
    call.charge(len(head), ctx.settings.max_bytes_per_call)
    upstream.write(head)
    await _pipe(ctx, call, reader, upstream, content_length(request))
    try:
        response = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), HEAD_WAIT_S)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        writer.write(status_response(502, "the upstream server sent no complete response head"))
        return
    try:
        rewritten = rewrite_response_head(response)
    except BadRequest as e:
        writer.write(status_response(e.status, e.reason))
        return
    call.charge(len(rewritten), ctx.settings.max_bytes_per_call)
    writer.write(rewritten)
    # One response per connection: done at its length (or when the server closes).
    await _pipe(ctx, call, up_reader, writer, response_length(request, response))
    await writer.drain()
