"""The proxy's resolvers: the system's, and a given DNS server asked for A and AAAA."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import cast

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from donjon.egress.addresses import IPAddress
from donjon.egress.resolve import (
    DnsServerResolver,
    ResolveError,
    SystemResolver,
    make_resolver,
    parse_dns_server,
)

#: What the test DNS server answers: name -> (A records, AAAA records).
ZONE = {
    "api.donjon.test.": (["127.0.0.2"], []),
    "dual.donjon.test.": (["93.184.216.34"], ["2606:2800:220:1::1"]),
    "v6only.donjon.test.": ([], ["2001:db8::7"]),
    "many.donjon.test.": ([f"198.51.100.{i}" for i in range(1, 40)], []),
}


class _Zone(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.questions: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint's transport (not a DatagramTransport subclass on 3.11).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text()
        self.questions.append(name)
        if name not in ZONE:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        else:
            v4, v6 = ZONE[name]
            kind = dns.rdatatype.to_text(question.rdtype)
            values = v4 if kind == "A" else v6 if kind == "AAAA" else []
            if values:
                reply.answer.append(dns.rrset.from_text_list(name, 60, "IN", kind, values))
        assert self.transport is not None
        self.transport.sendto(reply.to_wire(), addr)


async def _ask(*names: str) -> list[list[IPAddress]]:
    """Each name's addresses, from a DNS server serving ZONE on a free port."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Zone, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        resolver = make_resolver(f"127.0.0.1:{port}")
        assert isinstance(resolver, DnsServerResolver)
        return [await resolver.resolve(name) for name in names]
    finally:
        transport.close()


def test_dns_server_answers_a_and_aaaa() -> None:
    """A name with both record types resolves to both addresses; long answers are capped."""
    api, dual, v6, many = asyncio.run(
        _ask("api.donjon.test", "dual.donjon.test", "v6only.donjon.test", "many.donjon.test")
    )
    assert api == [ipaddress.ip_address("127.0.0.2")]
    assert set(dual) == {
        ipaddress.ip_address("93.184.216.34"),
        ipaddress.ip_address("2606:2800:220:1::1"),
    }
    assert v6 == [ipaddress.ip_address("2001:db8::7")]
    assert len(many) == 16


def test_an_unknown_name_is_a_resolve_error() -> None:
    """NXDOMAIN is a ResolveError naming the host."""
    with pytest.raises(ResolveError, match=r"nowhere\.donjon\.test"):
        asyncio.run(_ask("nowhere.donjon.test"))


@pytest.mark.slow  # waits out the resolver's timeout
def test_a_silent_dns_server_is_a_resolve_error() -> None:
    """A server that never answers gives a ResolveError (bounded wait), not a hang."""

    async def go() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        try:
            with pytest.raises(ResolveError):
                await make_resolver(f"127.0.0.1:{port}").resolve("api.donjon.test")
        finally:
            transport.close()

    asyncio.run(go())


def test_the_system_resolver_reads_the_hosts_file() -> None:
    """`localhost` resolves through getaddrinfo to a loopback address."""
    addresses = asyncio.run(SystemResolver().resolve("localhost"))
    assert addresses
    assert all(a.is_loopback for a in addresses)


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "127.1", "[::1]", "::1"])
def test_an_ip_literal_is_not_resolved(host: str) -> None:
    """The resolvers refuse IP literals: the proxy judges those itself, never by lookup."""
    with pytest.raises(ResolveError, match="IP address"):
        asyncio.run(SystemResolver().resolve(host))
    with pytest.raises(ResolveError, match="IP address"):
        asyncio.run(DnsServerResolver(ipaddress.ip_address("127.0.0.1"), 9).resolve(host))


@pytest.mark.parametrize(
    ("text", "address", "port"),
    [
        ("10.0.0.2", "10.0.0.2", 53),
        ("127.0.0.1:5353", "127.0.0.1", 5353),
        ("[::1]:5353", "::1", 5353),
        ("::1", "::1", 53),
    ],
)
def test_dns_server_setting_is_parsed(text: str, address: str, port: int) -> None:
    """DONJON_EGRESS_DNS: an address and an optional port."""
    assert parse_dns_server(text) == (ipaddress.ip_address(address), port)


@pytest.mark.parametrize(
    "text", ["dns.example.com", "127.0.0.1:0", "127.0.0.1:99999", "[::1]x", ""]
)
def test_a_bad_dns_server_setting_is_an_error(text: str) -> None:
    """A name, a bad port or garbage is refused with a hint."""
    with pytest.raises(ResolveError) as e:
        parse_dns_server(text)
    assert e.value.hint


def test_a_lookup_whose_thread_cannot_start_counts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No thread left to start one: the lookup is refused as a ResolveError (the proxy's
    502, audited), and neither the function's count nor the pool's is left raised, so
    lookups run again once threads can be started (helper-124's review)."""
    import threading

    resolver = SystemResolver(threads=1)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patched:
        patched.setattr(threading.Thread, "start", refuse)
        with pytest.raises(ResolveError, match="can't start new thread"):
            asyncio.run(resolver.resolve("localhost", "f"))
    assert resolver.running("f") == 0
    addresses = asyncio.run(resolver.resolve("localhost", "f"))
    assert addresses and all(a.is_loopback for a in addresses)


def test_a_dns_server_that_never_answers_holds_at_most_a_functions_share() -> None:
    """The DNS server's resolver runs its questions on lookup threads, as the system's
    does: a function whose names the server never answers has at most `per_function`
    lookups running; its next is refused at once, and another function's is not."""
    import socket

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # receives every question, answers none
    port = silent.getsockname()[1]
    resolver = DnsServerResolver(ipaddress.ip_address("127.0.0.1"), port, per_function=2)

    async def go() -> tuple[list[str], str]:
        async def attack(i: int) -> str:
            try:
                await resolver.resolve(f"r{i}.slow.donjon.test", "attacker")
            except ResolveError as e:
                return e.message
            return "resolved"

        first = [asyncio.ensure_future(attack(i)) for i in range(2)]
        await asyncio.sleep(0.2)  # both on their threads
        third = await attack(2)
        other = await asyncio.gather(
            resolver.resolve("a.slow.donjon.test", "victim"), return_exceptions=True
        )
        outcomes = await asyncio.gather(*first)
        return [third, *outcomes], str(other[0])

    try:
        (third, *timed_out), other = asyncio.run(go())
    finally:
        silent.close()
    assert "earlier lookups of this function are still running" in third
    assert all("did not resolve" in o for o in timed_out), timed_out
    assert "still running" not in other  # asked (and, the server being silent, timed out)
