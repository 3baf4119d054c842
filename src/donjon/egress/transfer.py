"""The bytes of an allowed connection: the ClientHello checked, a tunnel, one HTTP exchange.

Every byte either way is charged to the call (`Call.charge`), so the byte cap
holds across all of a call's connections; a tunnel ends when both directions
are done or one fails (a cap ends both).
"""

from __future__ import annotations

import asyncio
import contextlib

from donjon.egress.addresses import parse_ip_literal
from donjon.egress.calls import Call
from donjon.egress.context import Refused, SessionContext
from donjon.egress.http import (
    BadRequest,
    ProxyRequest,
    content_length,
    forward_head,
    response_length,
    rewrite_response_head,
    status_response,
)
from donjon.egress.sni import (
    ClientHelloIncomplete,
    EncryptedServerName,
    NotClientHello,
    client_hello_sni,
)

__all__ = ["client_hello", "forward", "opening", "relay"]

#: Seconds for a ClientHello (and for a response head: three times that); its bytes at most.
HELLO_TIMEOUT_S = 10.0
MAX_HELLO_BYTES = 64 * 1024
CHUNK = 64 * 1024
#: The first byte of a TLS handshake record (RFC 8446 section 5.1).
_TLS_HANDSHAKE = b"\x16"


async def client_hello(
    reader: asyncio.StreamReader, request: ProxyRequest, start: bytes = b""
) -> bytes:
    """The TLS ClientHello the client sends into the tunnel (beginning with `start`, already
    read), its SNI checked against the host.

    Read into one growing buffer (a chunk at a time is appended, not the whole copied)."""
    data = bytearray(start)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HELLO_TIMEOUT_S
    while True:
        if data:
            try:
                sni = client_hello_sni(data)
                break
            except ClientHelloIncomplete:
                if len(data) >= MAX_HELLO_BYTES:
                    raise Refused("the TLS ClientHello is too large") from None
            except NotClientHello:
                raise Refused(f"CONNECT to port {request.port} must carry TLS") from None
            except EncryptedServerName:
                raise Refused(
                    "the TLS ClientHello encrypts the server name it asks for (ECH): the"
                    f" proxy cannot check it is {request.host}"
                ) from None
        try:
            chunk = await asyncio.wait_for(reader.read(CHUNK), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise Refused("no TLS ClientHello in time") from None
        if not chunk:
            raise Refused("the tunnel closed before a TLS ClientHello")
        data += chunk
    literal = parse_ip_literal(request.host) is not None
    if sni is None:
        if not literal:
            raise Refused(f"the TLS ClientHello names no server (SNI), expected {request.host}")
    elif sni.endswith(".") or sni.lower() != request.host:
        # Exactly the host, in any case: no trailing dot (RFC 6066), which a front end
        # routing by the name as sent would not match to the granted host.
        raise Refused(f"the TLS SNI {sni[:255]!r} differs from the CONNECT host")
    return bytes(data)


async def _pipe(
    ctx: SessionContext,
    call: Call,
    src: asyncio.StreamReader,
    dst: asyncio.StreamWriter,
    left: int | None = None,
) -> None:
    """Copy `src` to `dst` (at most `left` bytes), charging the call; half-close at the end."""
    limit = ctx.settings.max_bytes_per_call
    while left is None or left > 0:
        chunk = await src.read(CHUNK if left is None else min(CHUNK, left))
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


async def opening(reader: asyncio.StreamReader, request: ProxyRequest) -> bytes:
    """The first bytes of a tunnel to a port other than 443, whenever the client sends them
    (the server may speak first). If they begin a TLS handshake record, they must be a
    ClientHello whose SNI is the CONNECT host, as on 443: a TLS server on any granted port
    may serve other names too (a shared front end on 8443)."""
    first = await reader.read(CHUNK)
    if first[:1] != _TLS_HANDSHAKE or first[1:2] not in (b"", b"\x03"):
        return first  # not TLS (a TLS server refuses a first record that is not 22, 3.x)
    return await client_hello(reader, request, first)


async def _outbound(
    ctx: SessionContext,
    call: Call,
    reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
    request: ProxyRequest | None,
) -> None:
    """The client's side of a tunnel: its opening checked (with `request`), then the rest."""
    if request is not None:
        first = await opening(reader, request)
        call.charge(len(first), ctx.settings.max_bytes_per_call)
        upstream.write(first)
        await upstream.drain()
    await _pipe(ctx, call, reader, upstream)


async def relay(
    ctx: SessionContext,
    call: Call,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
    request: ProxyRequest | None = None,
) -> None:
    """Both directions of a tunnel until both ends are done (a cap or an error ends both).
    With `request`, the client's first bytes are checked by `opening` before any goes up."""
    tasks = [
        asyncio.ensure_future(_outbound(ctx, call, reader, upstream, request)),
        asyncio.ensure_future(_pipe(ctx, call, up_reader, writer)),
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
        response = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), HELLO_TIMEOUT_S * 3)
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
