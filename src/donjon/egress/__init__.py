"""Egress: the only way out of a sandbox is a granted host:port through the node's proxy.

This package holds what the proxy decides with: which addresses may be dialled
(addresses.py), the grants and how a destination matches them (grants.py), the
proxy's own name resolution (resolve.py) and the TLS ClientHello's server name
(sni.py); and the proxy itself: one unix socket per sandbox and one token per
call (proxy.py, calls.py), one connection's checks and bytes (session.py,
context.py, transfer.py, hello.py, http.py), its audit records (records.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from donjon.egress.resolve import ResolveError, Resolver, make_resolver
from donjon.egress.sni import ClientHelloIncomplete, NotClientHello, client_hello_sni
from donjon.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from donjon.egress.proxy import EgressProxy, EgressProxyError, SandboxEgress

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

# The proxy's names are imported on first use (donjon/lazy_exports.py): it brings the
# audit log and the database layer with it, which what only checks grants (the
# manifest's model, the scan helper, the CLI) must not pay for (0.35 s of the scan
# helper's start).
if not TYPE_CHECKING:  # mypy would make every name of a module __getattr__ Any
    __getattr__ = lazy_exports(
        globals(), {"proxy": ("EgressProxy", "EgressProxyError", "SandboxEgress")}
    )
