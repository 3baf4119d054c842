"""The network a client address counts in: the address itself (IPv4), its /64 (IPv6).

An IPv6 host is given a whole /64, so a caller can use a new address for every
connection or call: whatever counts callers by address (the connect gate, public
callers' rate buckets, the monitor's failed authentications and the throttles that
answer them) counts the /64, or a new address is a new caller every time.
"""

from __future__ import annotations

import ipaddress

__all__ = ["client_network"]


def client_network(address: str) -> str:
    """`address` (IPv4, or anything that is not an IPv6 address), or its IPv6 /64 as
    `2001:0db8:0001:0002::/64`; an IPv4-mapped IPv6 address is its IPv4 address."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return ip.exploded[:19] + "::/64"
