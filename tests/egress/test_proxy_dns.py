"""The proxy resolves names itself, through a real DNS server, once per connection."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import cast

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from donjon.egress.resolve import make_resolver
from egress_support import raw_request, rig


class RebindingZone(asyncio.DatagramProtocol):
    """A DNS server with TTL 0 whose A answer for a name changes after each question."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: dict[str, int] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text()
        if name not in self.answers:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            n = self.asked.get(name, 0)
            self.asked[name] = n + 1
            seq = self.answers[name]
            value = seq[min(n, len(seq) - 1)]
            reply.answer.append(dns.rrset.from_text_list(name, 0, "IN", "A", [value]))
        if self.transport is not None:
            self.transport.sendto(reply.to_wire(), addr)


def test_a_rebinding_name_is_judged_per_connection_and_dialled_as_checked(tmp_path: Path) -> None:
    """First answer allowed, then loopback: the first connection reaches the checked
    address, the next is refused, and each asked the DNS server exactly once."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    resolver = make_resolver(f"127.0.0.1:{udp.getsockname()[1]}")
    with rig(tmp_path, resolver) as r:
        zone = RebindingZone({"rebind.donjon.test.": [r.address, "127.0.0.1"]})

        async def serve() -> asyncio.DatagramTransport:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: zone, sock=udp
            )
            return transport

        transport = r.run(serve())
        try:
            target = f"rebind.donjon.test:{r.http_port}"
            sandbox = r.open([target])
            port = r.relay(sandbox, r.begin(sandbox))
            request = f"GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()
            first = raw_request(port, request)
            assert first.startswith(b"HTTP/1.1 200") and len(r.upstream.heads) == 1
            second = raw_request(port, request)
            assert second.startswith(b"HTTP/1.1 403") and b"loopback" in second
            assert zone.asked == {"rebind.donjon.test.": 2}
            allowed, denied = r.records()
            assert allowed["detail"]["address"] == r.address
            assert "127.0.0.1" in denied["detail"]["reason"]
        finally:
            r.call_soon(transport.close)
