"""One connection through the egress proxy, from its request to its last byte.

The order of checks reads top to bottom in `serve`: the request head (bounded
in bytes and time), the grant (`permissions.egress`; an IP literal only when
granted literally), the resolution (the proxy's own resolver), every address
checked (non-global, metadata and the host's own addresses refused), the dial
(of an address just checked, never re-resolved), for CONNECT to 443 the ClientHello's SNI
against the CONNECT host (on another port, when the tunnel opens with TLS; a second
hello a HelloRetryRequest asks for too, hello.py), then the bytes, charged against the
call's cap.
Every decision is audited (records.py) before any byte goes upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

from donjon.egress.addresses import IPAddress, own_address_refusal, parse_ip_literal, refusal
from donjon.egress.calls import Call, LimitReached
from donjon.egress.context import Refused, SessionContext
from donjon.egress.grants import EgressGrant
from donjon.egress.hello import HelloWatch, client_hello
from donjon.egress.http import (
    MAX_HEAD_BYTES,
    BadRequest,
    ProxyRequest,
    parse_request,
    status_response,
)
from donjon.egress.resolve import ResolveError
from donjon.egress.transfer import forward, relay

__all__ = ["Refused", "SessionContext", "serve"]

#: Seconds for a request head and for a dial.
HEAD_TIMEOUT_S = 10.0
DIAL_TIMEOUT_S = 10.0


@dataclass
class _Progress:
    """How far a connection got: what to answer, and what to close, if it fails."""

    request: ProxyRequest | None = None
    upstream: asyncio.StreamWriter | None = None
    tunnelled: bool = False

    @property
    def destination(self) -> str:
        return self.request.destination if self.request is not None else ""


async def serve(
    ctx: SessionContext,
    call: Call,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Serve one proxy request of `call` on (`reader`, `writer`), then close."""
    progress = _Progress()
    try:
        async with asyncio.timeout(ctx.settings.max_connection_s):
            await _serve(ctx, call, reader, writer, progress)
    except Refused as e:
        where = progress.destination or e.destination
        await ctx.refused(call, ctx.decision(call, where, e.decision, e.reason))
        if not progress.tunnelled:
            with contextlib.suppress(OSError):
                writer.write(status_response(e.status, e.reason))
    except TimeoutError:  # the connection's own time limit (inner waits raise Refused)
        reason = f"the connection time limit ({ctx.settings.max_connection_s:g} s) was reached"
        await ctx.refused(call, ctx.decision(call, progress.destination, "denied", reason))
    except LimitReached as e:
        await ctx.refused(call, ctx.decision(call, progress.destination, "denied", e.reason))
        if progress.upstream is None:  # nothing answered yet
            with contextlib.suppress(OSError):
                writer.write(status_response(429, e.reason))
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # either side went away: the connection is over
    finally:
        for w in (progress.upstream, writer):
            if w is not None:
                w.close()


async def _read_request(
    ctx: SessionContext, call: Call, reader: asyncio.StreamReader
) -> ProxyRequest | None:
    """The request head, bounded in bytes and time; None if the client left first."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
    except asyncio.IncompleteReadError:
        return None  # closed before a request: nothing was asked, nothing to decide
    except asyncio.LimitOverrunError as e:
        raise Refused(f"the request head is over {MAX_HEAD_BYTES} bytes", 400) from e
    except TimeoutError as e:
        raise Refused("no complete request head in time", 400) from e
    call.charge(len(head), ctx.settings.max_bytes_per_call)
    try:
        return parse_request(head)
    except BadRequest as e:
        raise Refused(e.reason, e.status, destination=e.destination) from e


async def _serve(
    ctx: SessionContext,
    call: Call,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    progress: _Progress,
) -> None:
    request = progress.request = await _read_request(ctx, call, reader)
    if request is None:
        return
    grant, addresses = await _check(ctx, request, call.function)
    up_reader, upstream, address = await _dial(addresses, request.port)
    progress.upstream = upstream
    allowed = ctx.decision(call, request.destination, "allowed", "granted", address, grant.text)
    if not request.connect:
        await ctx.records.note(call.id, allowed)
        await forward(ctx, call, request, reader, writer, up_reader, upstream)
        return
    writer.write(status_response(200, ""))
    progress.tunnelled = True
    if request.port != 443:  # the tunnel's opening is read in the relay (TLS or not)
        await ctx.records.note(call.id, allowed)
        await relay(ctx, call, reader, writer, up_reader, upstream, request)
        return
    first, rest = await client_hello(reader, request)
    await ctx.records.note(call.id, allowed)  # durable before any byte goes upstream
    watch = HelloWatch(request)
    watch.hello_sent(rest)  # the rest waits for the server's answer to the hello
    call.charge(len(first), ctx.settings.max_bytes_per_call)
    upstream.write(first)
    await relay(ctx, call, reader, writer, up_reader, upstream, request, watch)


async def _check(
    ctx: SessionContext, request: ProxyRequest, caller: str
) -> tuple[EgressGrant, list[IPAddress]]:
    """The grant and the checked addresses for `request` of function `caller`, or Refused
    with the reason."""
    literal = parse_ip_literal(request.host)
    grant = ctx.allowlist.match(request.host, request.port)
    if literal is not None:
        if grant is None or grant.address is None or grant.address != literal:
            raise Refused(f"the IP literal {literal} is not granted (permissions.egress)")
        addresses = [literal]
    elif grant is None:
        raise Refused("not granted (permissions.egress)")
    else:
        try:
            addresses = await ctx.resolver.resolve(request.host, caller)
        except ResolveError as e:
            raise Refused(f"could not resolve: {e.message}", 502, "failed") from e
        if not addresses:
            raise Refused("the name has no address", 502, "failed")
    for address in addresses:  # one refused address refuses the name: no partial answers
        networks = ctx.settings.allow_networks
        reason = refusal(address, networks) or own_address_refusal(address, networks)
        if reason is not None:
            raise Refused(f"resolves to {address}: {reason}")
    return grant, addresses


async def _dial(
    addresses: list[IPAddress], port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """Connect to the first of the checked `addresses` that answers (never a name)."""
    last = ""
    for address in addresses:
        try:
            reader, writer = await asyncio.wait_for(
                # A numeric host and AI_NUMERICHOST: nothing is looked up again here.
                asyncio.open_connection(str(address), port, flags=socket.AI_NUMERICHOST),
                DIAL_TIMEOUT_S,
            )
        except (OSError, TimeoutError) as e:
            last = f"{address}: {e.strerror or 'timed out'}" if isinstance(e, OSError) else str(e)
            continue
        return reader, writer, str(address)
    raise Refused(f"could not connect ({last or 'no address'})", 502, "failed")
