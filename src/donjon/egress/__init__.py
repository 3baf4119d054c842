"""Egress: the only way out of a sandbox is a granted host:port through the node's proxy.

This package holds what the proxy decides with: which addresses may be dialled
(addresses.py), the grants and how a destination matches them (grants.py), the
proxy's own name resolution (resolve.py) and the TLS ClientHello's server name
(sni.py); and the proxy itself: one unix socket per sandbox and one token per
call (proxy.py, calls.py), one connection's checks and bytes (session.py,
context.py, transfer.py, http.py), its audit records (records.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

#: Loaded on first use (PEP 562): the proxy brings the audit log and the database layer
#: with it, which what only checks grants (the manifest's model, the scan helper, the
#: CLI) must not pay for (0.35 s of the scan helper's start).
_PROXY = frozenset({"EgressProxy", "EgressProxyError", "SandboxEgress"})


if not TYPE_CHECKING:  # seen by mypy, a module __getattr__ would make any name of it Any

    def __getattr__(name: str) -> Any:
        if name in _PROXY:
            from donjon.egress import proxy

            return getattr(proxy, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
