"""Name resolution for the egress proxy: the proxy resolves, checks and dials itself.

The function never resolves a name that the proxy then trusts: the proxy asks its own
resolver, checks every address it got (addresses.py), and dials one it checked, so a
name whose answer changes between the check and the connection (DNS rebinding) cannot
slip a loopback address through. Two resolvers: the system's (``getaddrinfo`` on the
loop's executor) and a given DNS server (DONJON_EGRESS_DNS, ``host:port``), queried
for A and AAAA with dnspython, for nodes (and tests) whose egress names are served by
a DNS server of their own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Protocol

from donjon.egress.addresses import IPAddress, parse_ip_literal
from donjon.errors import Error

__all__ = [
    "DnsServerResolver",
    "ResolveError",
    "Resolver",
    "SystemResolver",
    "make_resolver",
    "parse_dns_server",
]

#: The most addresses one answer is taken from (the rest are ignored).
MAX_ADDRESSES = 16
#: Seconds one resolution may take, both record types together.
RESOLVE_TIMEOUT_S = 5.0


class ResolveError(Error):
    """A name could not be resolved to any address."""

    title = "Egress name not resolved"


class Resolver(Protocol):
    """Resolves a DNS name to its addresses (A and AAAA)."""

    async def resolve(self, host: str) -> list[IPAddress]:
        """The addresses of `host` (a name, never an IP literal); `ResolveError` if none."""
        ...


def _name(host: str) -> str:
    if parse_ip_literal(host) is not None:
        raise ResolveError(f"{host!r} is an IP address, not a name to resolve")
    return host


def _unique(addresses: list[IPAddress], host: str) -> list[IPAddress]:
    out: list[IPAddress] = []
    for address in addresses:
        if address not in out:
            out.append(address)
    if not out:
        raise ResolveError(f"{host} has no address")
    return out[:MAX_ADDRESSES]


class SystemResolver:
    """The host's resolver (``getaddrinfo``, /etc/hosts and /etc/resolv.conf)."""

    async def resolve(self, host: str) -> list[IPAddress]:
        name = _name(host)
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
            )
        except (OSError, UnicodeError, TimeoutError) as e:
            raise ResolveError(f"{host} did not resolve ({e or 'timed out'})") from None
        addresses: list[IPAddress] = []
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                text = str(sockaddr[0]).split("%", 1)[0]
                addresses.append(ipaddress.ip_address(text))
        return _unique(addresses, host)


class DnsServerResolver:
    """Asks one DNS server (A and AAAA at once), nothing else (no /etc/hosts)."""

    def __init__(self, server: IPAddress, port: int = 53) -> None:
        # dnspython only where a DNS server is configured: settings and the grants
        # import this module, and most nodes use the system resolver.
        import dns.asyncresolver

        self.server = server
        self.port = port
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [str(server)]
        resolver.port = port
        resolver.lifetime = RESOLVE_TIMEOUT_S
        resolver.timeout = RESOLVE_TIMEOUT_S / 2
        resolver.cache = None
        self._resolver = resolver

    async def resolve(self, host: str) -> list[IPAddress]:
        name = _name(host)
        answers = await asyncio.gather(
            self._query(name, "A"), self._query(name, "AAAA"), return_exceptions=True
        )
        addresses: list[IPAddress] = []
        problems: list[str] = []
        for answer in answers:
            if isinstance(answer, BaseException):
                if not isinstance(answer, ResolveError):
                    raise answer
                problems.append(answer.message)
            else:
                addresses += answer
        if not addresses:
            raise ResolveError(problems[0] if problems else f"{host} has no address")
        return _unique(addresses, host)

    async def _query(self, name: str, kind: str) -> list[IPAddress]:
        import dns.exception
        import dns.resolver

        try:
            answer = await self._resolver.resolve(name, kind, search=False)
        except dns.resolver.NoAnswer:
            return []
        except dns.resolver.NXDOMAIN:
            raise ResolveError(f"{name} does not exist (NXDOMAIN)") from None
        except dns.exception.DNSException as e:
            raise ResolveError(f"{name} did not resolve ({e})") from None
        return [ipaddress.ip_address(record.address) for record in answer]


def parse_dns_server(text: str) -> tuple[IPAddress, int]:
    """DONJON_EGRESS_DNS: ``IP``, ``IP:PORT`` or ``[IPv6]:PORT``; `ResolveError` if not."""
    host, port = text.strip(), "53"
    if host.startswith("["):
        inner, _, rest = host[1:].partition("]")
        host = inner
        if rest:
            if not rest.startswith(":"):
                host = ""
            port = rest[1:]
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ResolveError(
            f"DONJON_EGRESS_DNS {text!r} is not a DNS server address",
            hint="give an IP address and optional port, e.g. 10.0.0.2 or 127.0.0.1:5353",
        )
    return address, int(port)


def make_resolver(dns_server: str | None) -> Resolver:
    """The system resolver (None), or one that asks the DNS server at `dns_server`."""
    if dns_server is None:
        return SystemResolver()
    address, port = parse_dns_server(dns_server)
    return DnsServerResolver(address, port)
