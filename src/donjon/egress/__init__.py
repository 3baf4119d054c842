"""Egress: the only way out of a sandbox is a granted host:port through the node's proxy.

This package holds what the proxy decides with: which addresses may be dialled
(addresses.py), the grants and how a destination matches them (grants.py), the
proxy's own name resolution (resolve.py) and the TLS ClientHello's server name
(sni.py); and the proxy itself: one unix socket per sandbox and one token per
call (proxy.py, calls.py), one connection's checks and bytes (session.py,
context.py, transfer.py, http.py), its audit records (records.py).
"""

from __future__ import annotations

from donjon.egress.addresses import (
    AddressError,
    IPAddress,
    IPNetwork,
    parse_ip_literal,
    parse_networks,
    refusal,
)
from donjon.egress.grants import (
    Allowlist,
    EgressGrant,
    EgressGrantError,
    parse_grant,
    parse_grant_syntax,
)
from donjon.egress.proxy import EgressProxy, EgressProxyError, SandboxEgress
from donjon.egress.resolve import ResolveError, Resolver, make_resolver
from donjon.egress.sni import ClientHelloIncomplete, NotClientHello, client_hello_sni

__all__ = [
    "AddressError",
    "Allowlist",
    "ClientHelloIncomplete",
    "EgressGrant",
    "EgressGrantError",
    "EgressProxy",
    "EgressProxyError",
    "IPAddress",
    "IPNetwork",
    "NotClientHello",
    "ResolveError",
    "Resolver",
    "SandboxEgress",
    "client_hello_sni",
    "make_resolver",
    "parse_grant",
    "parse_grant_syntax",
    "parse_ip_literal",
    "parse_networks",
    "refusal",
]
