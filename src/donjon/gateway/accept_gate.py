"""New connections per client address, limited at accept: before the TLS handshake.

A client that opens a new connection for every request costs the gateway a whole
TLS handshake each (1.2-1.7 ms of CPU, docs/performance.md) before any limit on
requests can see it; the connection caps (connections.py) bound how many are
open at once, not how fast they come. Here each client address has a token
bucket of new connections (`DONJON_CONNECT_RATE` a second, `DONJON_CONNECT_BURST`
at once). Over it, the connection is aborted as soon as it is accepted: no
handshake, no byte read or written. Within it, the listener's TLS starts on the
accepted socket (`loop.start_tls`, with the same handshake deadline) and the
HTTP protocol gets the TLS transport, as it would from a TLS server.

IPv6 clients count per /64 (one host usually has a whole /64). Trusted proxies
(DONJON_TRUSTED_PROXIES), which carry many clients' connections, are exempt.
Memory is bounded: buckets idle long enough to be full again are dropped (the
oldest first, a few on each new connection), and past `max_tracked` addresses
the least recently seen is dropped (it starts again with a full bucket).

Refusals are counted (`donjon_rate_limited_total{limit="connect"}`), logged at
most once per LOG_EVERY_S, and audited as `node.shed` denials (reason
`connect-rate`) per address and window (audit/denials.py), never a record each.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

from donjon.client_network import client_network

__all__ = ["AcceptGate", "ConnectRate"]

log = logging.getLogger("donjon")

LOG_EVERY_S = 10.0
#: Bytes a client may send before its TLS starts (one loop turn's reads: a ClientHello
#: is a few KiB); more, and the connection is dropped.
MAX_EARLY_BYTES = 64 * 1024
#: Idle buckets dropped per new connection at most (amortised sweeping).
_SWEEP_EACH = 4

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def in_networks(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether `address` (a client's, as the socket gives it) is in one of `networks`
    (the trusted proxies): never for a name or anything that is not an address."""
    if not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class ConnectRate:
    """A token bucket of new connections per client address."""

    def __init__(
        self,
        rate: float,
        burst: int,
        proxies: tuple[IPNetwork, ...] = (),
        max_tracked: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("the connect rate and burst must be positive")
        self.rate = rate
        self.burst = float(burst)
        self.proxies = proxies
        self.max_tracked = max(1, max_tracked)
        self._clock = clock
        #: key -> (tokens, when): least recently seen first (a dict keeps insertion order).
        self._buckets: dict[str, tuple[float, float]] = {}
        #: Seconds after which an untouched bucket is full again: then it can be dropped.
        self._full_after = self.burst / rate

    @property
    def tracked(self) -> int:
        return len(self._buckets)

    def is_proxy(self, address: str) -> bool:
        return in_networks(address, self.proxies)

    def admit(self, address: str) -> bool:
        """Take a token from `address`'s bucket: False if it has none."""
        if self.is_proxy(address):
            return True
        key = client_network(address)
        now = self._clock()
        buckets = self._buckets
        held = buckets.pop(key, None)  # re-inserted below: now the most recent
        if held is None:
            tokens = self.burst
        else:
            tokens = min(self.burst, held[0] + (now - held[1]) * self.rate)
        admitted = tokens >= 1.0
        buckets[key] = (tokens - 1.0 if admitted else tokens, now)
        self._sweep(now)
        return admitted

    def _sweep(self, now: float) -> None:
        buckets = self._buckets
        for _ in range(_SWEEP_EACH):
            oldest = next(iter(buckets))
            if len(buckets) <= self.max_tracked and now - buckets[oldest][1] < self._full_after:
                return
            del buckets[oldest]


class _Handoff(asyncio.Protocol):
    """The TLS transport's protocol until the HTTP protocol takes over: keeps whatever
    arrives before that (normally nothing: uvloop reads after waking the waiter)."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.lost: tuple[Exception | None] | None = None

    def data_received(self, data: bytes) -> None:
        self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = (exc,)


class AcceptGate:
    """Checks each accepted connection's address against `rate` before anything else."""

    def __init__(self, rate: ConnectRate, on_refused: Callable[[str], None] | None = None) -> None:
        self.rate = rate
        self.on_refused = on_refused
        #: Connections refused since start, and since the last warning.
        self.refused = 0
        self._unlogged = 0
        self._warned_at = -LOG_EVERY_S
        self._upgrades: set[asyncio.Task[None]] = set()

    def wrap(
        self,
        factory: ProtocolFactory,
        context: ssl.SSLContext | None,
        handshake_timeout_s: float,
    ) -> ProtocolFactory:
        """A protocol factory for the listener: the gate first, then `factory`'s protocol
        (over TLS with `context`, whose certificate may be reloaded in place)."""
        return lambda: _GateProtocol(self, factory, context, handshake_timeout_s)

    def admit(self, address: str) -> bool:
        if self.rate.admit(address):
            return True
        self.refused += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._warned_at >= LOG_EVERY_S:
            log.warning(
                "refused %d new connection(s) over the connect rate (last: %s; "
                "DONJON_CONNECT_RATE=%g, DONJON_CONNECT_BURST=%d)",
                self._unlogged,
                address,
                self.rate.rate,
                int(self.rate.burst),
            )
            self._unlogged, self._warned_at = 0, now
        if self.on_refused is not None:
            self.on_refused(address)
        return False

    def upgrade(self, transport: asyncio.Transport, protocol: _GateProtocol) -> None:
        task = asyncio.get_running_loop().create_task(protocol.upgrade(transport))
        self._upgrades.add(task)  # held: the loop keeps only weak references to tasks
        task.add_done_callback(self._upgrades.discard)


class _GateProtocol(asyncio.Protocol):
    """The listener's protocol for one accepted connection, until it is let through."""

    __slots__ = (
        "_context",
        "_early",
        "_early_size",
        "_factory",
        "_gate",
        "_lost",
        "_timeout_s",
        "_transport",
    )

    def __init__(
        self,
        gate: AcceptGate,
        factory: ProtocolFactory,
        context: ssl.SSLContext | None,
        timeout_s: float,
    ) -> None:
        self._gate = gate
        self._factory = factory
        self._context = context
        self._timeout_s = timeout_s
        self._early: list[bytes] = []
        self._early_size = 0
        self._lost = False  # the client left before TLS started
        self._transport: Any = None

    # A stream server's transport (uvloop's is not an asyncio.Transport subclass).
    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "-"
        if not self._gate.admit(address):
            transport.abort()  # nothing read, nothing written, no handshake
            return
        if self._context is None:  # plain HTTP (--unsafe-http): the protocol takes over now
            app = self._factory()
            transport.set_protocol(app)
            app.connection_made(transport)
            return
        self._gate.upgrade(transport, self)

    def data_received(self, data: bytes) -> None:
        # The loop reads as soon as this returns: a ClientHello may come before TLS starts
        # (one loop turn's reads at most; more than a ClientHello's worth is not one).
        self._early_size += len(data)
        if self._early_size > MAX_EARLY_BYTES:
            self._lost = True
            self._early = []
            self._transport.abort()
            return
        self._early.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True

    async def upgrade(self, transport: asyncio.Transport) -> None:
        if self._context is None or self._lost or transport.is_closing():
            return  # gone already (or, never, not a TLS listener's connection)
        handoff = _Handoff()
        loop = asyncio.get_running_loop()
        # start_tls pauses reading and puts its TLS protocol on the transport before it
        # waits; this runs next, before the protocol's connection_made and any new read.
        loop.call_soon(self._pass_early, transport)
        try:
            tls = await loop.start_tls(
                transport,
                handoff,
                self._context,
                server_side=True,
                ssl_handshake_timeout=self._timeout_s,
                ssl_shutdown_timeout=self._timeout_s,
            )
        except OSError as e:  # the handshake failed, timed out, or the client left
            log.debug("TLS handshake failed: %r", e)
            transport.abort()
            return
        if tls is None or handoff.lost is not None:  # gone before the protocol took over
            transport.abort()
            return
        app: Any = self._factory()
        tls.set_protocol(app)
        app.connection_made(tls)
        for data in handoff.pending:
            app.data_received(data)

    def _pass_early(self, transport: Any) -> None:
        """Hand what was read before TLS started (the ClientHello) to the TLS protocol."""
        early, self._early = self._early, []
        tls = transport.get_protocol()
        if not early or tls is self or transport.is_closing():
            return
        for data in early:
            view = memoryview(data)
            while view:
                buffer = tls.get_buffer(len(view))
                n = min(len(buffer), len(view))
                buffer[:n] = view[:n]
                tls.buffer_updated(n)
                view = view[n:]
