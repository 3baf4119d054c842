"""One connection through the egress proxy, from its request to its last byte.

The order of checks reads top to bottom in `serve`: the request head (bounded
in bytes and time), the grant (`permissions.egress`; an IP literal only when
granted literally), the resolution (the proxy's own resolver), every address
checked (non-global and metadata addresses refused), the dial (of an address
just checked, never re-resolved), for CONNECT to 443 the ClientHello's SNI
against the CONNECT host, then the bytes, charged against the call's cap.
Every decision is audited (records.py) before any byte goes upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from donjon.audit.log import AuditEvent, AuditLog
from donjon.egress.addresses import IPAddress, parse_ip_literal, refusal
from donjon.egress.calls import Call, LimitReached
from donjon.egress.grants import Allowlist, EgressGrant
from donjon.egress.http import (
    MAX_HEAD_BYTES,
    BadRequest,
    ProxyRequest,
    content_length,
    forward_head,
    parse_request,
    response_length,
    rewrite_response_head,
    status_response,
)
from donjon.egress.records import Decision, EgressRecords
from donjon.egress.resolve import ResolveError, Resolver
from donjon.egress.sni import ClientHelloIncomplete, NotClientHello, client_hello_sni

if TYPE_CHECKING:  # config.py imports egress/ (its settings' parsers): no cycle at run time
    from donjon.config import EgressSettings

__all__ = ["Refused", "SessionContext", "serve"]

log = logging.getLogger("donjon.egress")

#: Seconds for a request head, a dial, a ClientHello; bytes of ClientHello read at most.
HEAD_TIMEOUT_S = 10.0
DIAL_TIMEOUT_S = 10.0
HELLO_TIMEOUT_S = 10.0
MAX_HELLO_BYTES = 64 * 1024
CHUNK = 64 * 1024


class Refused(Exception):
    """The connection is refused (or failed); answered with `status` unless tunnelled."""

    def __init__(self, reason: str, status: int = 403, decision: str = "denied") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.decision = decision


@dataclass(frozen=True)
class SessionContext:
    """What every connection of one sandbox is checked against."""

    settings: EgressSettings
    allowlist: Allowlist
    resolver: Resolver
    records: EgressRecords
    audit: AuditLog
    #: The function's runtime policy for a refused attempt: "alert" or "block".
    egress_attempts: str

    def decision(
        self,
        call: Call,
        request: ProxyRequest | None,
        decision: str,
        reason: str,
        address: str = "",
        grant: str = "",
    ) -> Decision:
        return Decision(
            call.function,
            call.version,
            call.request_id,
            request.destination if request is not None else "",
            decision,
            reason,
            address,
            grant,
        )

    async def refused(self, call: Call, decision: Decision) -> None:
        """Audit a refusal, and apply the egress_attempts policy (once per call)."""
        await self.records.note(call.id, decision)
        if decision.decision != "denied" or call.policy_noted or call.ended:
            return
        call.policy_noted = True
        block = self.egress_attempts == "block"
        await self.audit.record(
            AuditEvent(
                f"function:{call.function}",
                "policy.block" if block else "policy.alert",
                f"{call.function}@{call.version}",
                "blocked" if block else "alert",
                {
                    "policy": "egress_attempts",
                    "mode": self.egress_attempts,
                    "function": call.function,
                    "version": call.version,
                    "request_id": call.request_id,
                    "destination": decision.destination,
                    "reason": decision.reason,
                },
            )
        )
        if block and call.on_refused is not None:
            try:
                call.on_refused(f"egress refused: {decision.destination}: {decision.reason}")
            except Exception:  # the instance's callback must not take the proxy down
                log.exception("ending a call after a refused egress attempt failed")


@dataclass
class _Progress:
    """How far a connection got: what to answer, and what to close, if it fails."""

    request: ProxyRequest | None = None
    upstream: asyncio.StreamWriter | None = None
    tunnelled: bool = False


async def serve(
    ctx: SessionContext,
    call: Call,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Serve one proxy request of `call` on (`reader`, `writer`), then close."""
    progress = _Progress()
    try:
        await _serve(ctx, call, reader, writer, progress)
    except Refused as e:
        await ctx.refused(call, ctx.decision(call, progress.request, e.decision, e.reason))
        if not progress.tunnelled:
            with contextlib.suppress(OSError):
                writer.write(status_response(e.status, e.reason))
    except LimitReached as e:
        await ctx.refused(call, ctx.decision(call, progress.request, "denied", e.reason))
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
        raise Refused(e.reason, e.status) from e


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
    grant, addresses = await _check(ctx, request)
    up_reader, upstream, address = await _dial(addresses, request.port)
    progress.upstream = upstream
    allowed = ctx.decision(call, request, "allowed", "granted", address, grant.text)
    if not request.connect:
        await ctx.records.note(call.id, allowed)
        await _forward(ctx, call, request, reader, writer, up_reader, upstream)
        return
    writer.write(status_response(200, ""))
    progress.tunnelled = True
    first = await _client_hello(reader, request) if request.port == 443 else b""
    await ctx.records.note(call.id, allowed)  # durable before any byte goes upstream
    if first:
        call.charge(len(first), ctx.settings.max_bytes_per_call)
        upstream.write(first)
    await _relay(ctx, call, reader, writer, up_reader, upstream)


async def _check(ctx: SessionContext, request: ProxyRequest) -> tuple[EgressGrant, list[IPAddress]]:
    """The grant and the checked addresses for `request`, or Refused with the reason."""
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
            addresses = await ctx.resolver.resolve(request.host)
        except ResolveError as e:
            raise Refused(f"could not resolve: {e.message}", 502, "failed") from e
        if not addresses:
            raise Refused("the name has no address", 502, "failed")
    for address in addresses:  # one refused address refuses the name: no partial answers
        reason = refusal(address, ctx.settings.allow_networks)
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


async def _client_hello(reader: asyncio.StreamReader, request: ProxyRequest) -> bytes:
    """The TLS ClientHello the client sends into the tunnel, its SNI checked against the host."""
    data = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HELLO_TIMEOUT_S
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(CHUNK), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise Refused("no TLS ClientHello in time") from None
        if not chunk:
            raise Refused("the tunnel closed before a TLS ClientHello")
        data += chunk
        try:
            sni = client_hello_sni(data)
            break
        except ClientHelloIncomplete:
            if len(data) >= MAX_HELLO_BYTES:
                raise Refused("the TLS ClientHello is too large") from None
        except NotClientHello:
            raise Refused("CONNECT to port 443 must carry TLS") from None
    literal = parse_ip_literal(request.host) is not None
    if sni is None:
        if not literal:
            raise Refused(f"the TLS ClientHello names no server (SNI), expected {request.host}")
    elif sni.lower().rstrip(".") != request.host:
        raise Refused(f"the TLS SNI {sni[:255]!r} differs from the CONNECT host")
    return data


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


async def _relay(
    ctx: SessionContext,
    call: Call,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
) -> None:
    """Both directions of a tunnel until both ends are done (a cap or an error ends both)."""
    tasks = [
        asyncio.ensure_future(_pipe(ctx, call, reader, upstream)),
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


async def _forward(
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
        response = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S * 3)
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
