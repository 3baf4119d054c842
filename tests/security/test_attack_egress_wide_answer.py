"""Attack: a granted name whose DNS answer is as wide as a DNS message allows, to stall
the node's event loop while the egress proxy digests it.

A DNS answer over TCP may be 64 KiB: about 4,000 A records and, for the AAAA question,
2,300 more. The function's author controls the granted name's zone. The proxy dropped
duplicates by searching the list it was building (quadratic, comparing IPv4 with IPv6
addresses through Python's `ipaddress`), on the node's event loop: 2.8 s per lookup
measured, and a call may open 32 connections. Everything else on the node (the
gateway, every other function's egress) waited.

The DNS server here answers UDP with the truncation bit and TCP with the whole
answer (what a recursive resolver relays), through the real `DnsServerResolver` and
the real proxy (`ProxyRig`). No test asserts a time: what is counted is the work, the
answer's records the resolver turns into addresses (every one of them before; at most
`MAX_ADDRESSES` a question now, and so at most that many to de-duplicate).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import threading
from pathlib import Path
from typing import Any, cast

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset
import pytest

from donjon.egress import resolve
from donjon.egress.resolve import make_resolver
from egress_support import raw_request, rig

NAME = "wide.donjon.test."


def _wide_answers() -> dict[int, bytes]:
    """The whole answer's wire form per question type (id 0, patched per query)."""
    query = dns.message.make_query(NAME, "A")
    out: dict[int, bytes] = {}
    # Private addresses only, so the proxy refuses the name whichever it judges first
    # (and dials nothing).
    v4 = [str(ipaddress.IPv4Address(0x0A000000 + i)) for i in range(4000)]
    v6 = [str(ipaddress.IPv6Address((0xFD00 << 112) + i)) for i in range(2300)]
    for kind, values in ((dns.rdatatype.A, v4), (dns.rdatatype.AAAA, v6)):
        reply = dns.message.make_response(query)
        reply.question[0].rdtype = kind
        reply.answer.append(dns.rrset.from_text_list(NAME, 0, "IN", kind, values))
        out[kind] = reply.to_wire(max_size=65535)
    return out


class WideZone:
    """UDP: truncated (TC, no records); TCP: the whole answer."""

    def __init__(self) -> None:
        self.answers = _wide_answers()
        self.tcp_answers = 0

    def reply(self, data: bytes, *, truncated: bool) -> bytes:
        query = dns.message.from_wire(data)
        if truncated:
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.TC
            return reply.to_wire()
        self.tcp_answers += 1
        wire = self.answers[query.question[0].rdtype]
        return data[:2] + wire[2:]

    async def tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            wire = self.reply(await reader.readexactly(length), truncated=False)
            writer.write(struct.pack("!H", len(wire)) + wire)
            await writer.drain()
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, zone: WideZone) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(self.zone.reply(data, truncated=True), addr)


class _Parsing:
    """`dns.message.from_wire`, noting the thread of each wide answer it parses (the
    zone's own servers parse the queries, on the rig's loop)."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self._real = dns.message.from_wire

    def __call__(self, wire: bytes, *args: Any, **kwargs: Any) -> dns.message.Message:
        if len(wire) > 4096:
            self.threads.append(threading.get_ident())
        return self._real(wire, *args, **kwargs)


class _Counting:
    """`ipaddress` as the resolver module sees it, counting the addresses it makes."""

    def __init__(self) -> None:
        self.made = 0

    def ip_address(self, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        self.made += 1
        return ipaddress.ip_address(text)

    def __getattr__(self, name: str) -> object:
        return getattr(ipaddress, name)


def _udp_and_tcp() -> tuple[socket.socket, socket.socket, int]:
    """A UDP and a TCP socket on one free port (a DNS server's two), another port while the
    TCP one is some other process's (ci54d: the UDP port's number was taken in TCP)."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket()
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", port))
        except OSError:
            udp.close()
            tcp.close()
            continue
        return udp, tcp, port
    raise AssertionError("no port free in both UDP and TCP in 50 tries")


def test_a_wide_dns_answer_is_not_digested_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    udp, tcp, port = _udp_and_tcp()
    tcp.listen(16)
    zone = WideZone()
    counting = _Counting()
    parsing = _Parsing()
    with rig(tmp_path, make_resolver(f"127.0.0.1:{port}")) as r:

        async def start() -> tuple[asyncio.BaseTransport, asyncio.Server]:
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(zone), sock=udp)
            server = await asyncio.start_server(zone.tcp, sock=tcp)
            return transport, server

        async def loop_thread() -> int:
            return threading.get_ident()

        transport, server = r.run(start())
        loop = r.run(loop_thread())
        monkeypatch.setattr(resolve, "ipaddress", counting)
        monkeypatch.setattr(dns.message, "from_wire", parsing)
        try:
            target = f"wide.donjon.test:{r.http_port}"
            sandbox = r.open([target])
            relay = r.relay(sandbox, r.begin(sandbox, "req-wide"))
            request = f"GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()
            answer = raw_request(relay, request)
            assert answer.startswith(b"HTTP/1.1 403") and b"private 10/8" in answer, answer
            assert zone.tcp_answers == 2  # both whole answers were read
            assert r.upstream.heads == []
            # Two questions (A, AAAA) of 4,000 and 2,300 records: each was made an address
            # and searched for among those before it, on the node's event loop.
            assert counting.made <= 2 * resolve.MAX_ADDRESSES, counting.made
            # The 64 KiB answers were parsed off the node's event loop: dnspython reads a
            # message whole (about 0.2 s for these two on a loaded node), and on the loop
            # that stalled every request of every tenant for as long.
            assert parsing.threads and loop not in parsing.threads
        finally:
            r.call_soon(transport.close)
            r.call_soon(server.close)
