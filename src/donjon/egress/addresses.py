"""Which addresses the egress proxy may dial, and how to read an IP literal.

A destination is dialled only when it is globally routable. The ranges below are
IANA's special-purpose registries (IPv4 and IPv6) written out, not Python's
`is_global`, whose answer has changed between Python versions: an explicit table
reads the same on every interpreter and its tests name each range. IPv6 forms
that carry an IPv4 address (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64
64:ff9b::/96, 6to4 2002::/16) are judged by the address they carry, so
``::ffff:127.0.0.1`` is loopback. The node's admin may open networks for
internal services (DONJON_EGRESS_ALLOW_NETWORKS); the cloud metadata addresses
are refused even there.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence

from donjon.errors import Error

__all__ = [
    "METADATA_ADDRESSES",
    "AddressError",
    "IPAddress",
    "IPNetwork",
    "embedded_ipv4",
    "own_address_refusal",
    "parse_ip_literal",
    "parse_networks",
    "refusal",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network


class AddressError(Error):
    """An address or network setting is malformed."""

    title = "Invalid network"


#: Cloud instance metadata services, and the other endpoints a cloud serves its VMs'
#: credentials or platform state on: AWS/GCP/Azure/OpenStack (169.254.169.254), AWS over
#: IPv6 (fd00:ec2::254), ECS task metadata (169.254.170.2), EKS Pod Identity's agent
#: (169.254.170.23, fd00:ec2::23), GCP over IPv6 (fd20:ce::254), OpenStack over IPv6
#: (fe80::a9fe:a9fe), Alibaba (100.100.100.200, fd00:100::100:200), Tencent Cloud
#: (169.254.0.23), Scaleway (169.254.42.42, fd00:42::42), Akamai over IPv6
#: (fd00:a9fe:a9fe::1), and Azure's WireServer (168.63.129.16: the VM agent's goal state
#: and extension settings). The last is a public address, so the routability check alone
#: lets any name whose DNS an author controls reach it.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        ipaddress.IPv4Address("169.254.169.254"),
        ipaddress.IPv4Address("169.254.170.2"),
        ipaddress.IPv4Address("169.254.170.23"),
        ipaddress.IPv4Address("100.100.100.200"),
        ipaddress.IPv4Address("168.63.129.16"),
        ipaddress.IPv4Address("169.254.0.23"),
        ipaddress.IPv4Address("169.254.42.42"),
        ipaddress.IPv6Address("fd00:ec2::254"),
        ipaddress.IPv6Address("fd00:ec2::23"),
        ipaddress.IPv6Address("fd20:ce::254"),
        ipaddress.IPv6Address("fe80::a9fe:a9fe"),
        ipaddress.IPv6Address("fd00:100::100:200"),
        ipaddress.IPv6Address("fd00:42::42"),
        ipaddress.IPv6Address("fd00:a9fe:a9fe::1"),
    }
)

#: IPv4 ranges that are not globally routable, each with the reason given.
_SPECIAL_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "this network 0.0.0.0/8"),
    (_V4("10.0.0.0/8"), "private 10/8"),
    (_V4("100.64.0.0/10"), "CGNAT 100.64/10"),
    (_V4("127.0.0.0/8"), "loopback 127/8"),
    (_V4("169.254.0.0/16"), "link-local 169.254/16"),
    (_V4("172.16.0.0/12"), "private 172.16/12"),
    (_V4("192.0.0.0/24"), "IETF protocol assignments 192.0.0/24"),
    (_V4("192.0.2.0/24"), "documentation 192.0.2/24"),
    (_V4("192.88.99.0/24"), "reserved 6to4 relay 192.88.99/24"),
    (_V4("192.168.0.0/16"), "private 192.168/16"),
    (_V4("198.18.0.0/15"), "benchmarking 198.18/15"),
    (_V4("198.51.100.0/24"), "documentation 198.51.100/24"),
    (_V4("203.0.113.0/24"), "documentation 203.0.113/24"),
    (_V4("224.0.0.0/4"), "multicast 224/4"),
    (_V4("240.0.0.0/4"), "reserved 240/4"),
)

#: IPv6 ranges that are not globally routable (checked before "outside 2000::/3").
_SPECIAL_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified ::"),
    (_V6("::1/128"), "loopback ::1"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64 64:ff9b:1::/48"),
    (_V6("100::/64"), "discard-only 100::/64"),
    (_V6("2001::/23"), "IETF protocol assignments 2001::/23"),
    (_V6("2001:db8::/32"), "documentation 2001:db8::/32"),
    (_V6("3fff::/20"), "documentation 3fff::/20"),
    (_V6("5f00::/16"), "reserved SRv6 5f00::/16"),
    (_V6("fc00::/7"), "unique-local fc00::/7"),
    (_V6("fe80::/10"), "link-local fe80::/10"),
    (_V6("fec0::/10"), "site-local fec0::/10"),
    (_V6("ff00::/8"), "multicast ff00::/8"),
)
_GLOBAL_UNICAST_V6 = _V6("2000::/3")

#: IPv6 forms that carry an IPv4 address in their low 32 bits, with their names.
_V4_IN_LOW_BITS: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::ffff:0:0/96"), "IPv4-mapped"),
    (_V6("::ffff:0:0:0/96"), "IPv4-translated"),
    (_V6("64:ff9b::/96"), "NAT64"),
    (_V6("::/96"), "IPv4-compatible"),
)
_6TO4 = _V6("2002::/16")

#: Digits, dots and hex digits only: what inet_aton may read as an IPv4 address.
_IPV4_SHORTHAND = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]*|[0-9]+)){0,3}")


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address `host` names if it is an IP literal in any notation; None for a name.

    Besides the canonical forms, ``[::1]`` (bracketed, as in a URL or CONNECT line),
    a trailing dot (``127.0.0.1.``), and every IPv4 notation inet_aton takes, which
    resolvers and HTTP clients pass on: the decimal ``2130706433``, hex ``0x7f000001``,
    octal ``0177.0.0.1`` and short forms ``127.1``, ``0x7f.1``. A numeric-looking host
    that is no address at all (``999999999999``) is None: it is not a valid name either,
    and callers that need a name check that themselves (grants.py).
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            return _plain(ipaddress.IPv6Address(text[1:-1]))
        except ValueError:
            return None
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    try:
        return _plain(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not _IPV4_SHORTHAND.fullmatch(text):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def embedded_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries, with the form's name; None if none."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address in _6TO4:
        return ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF), "6to4"
    for network, form in _V4_IN_LOW_BITS:
        if address in network:
            if form == "IPv4-compatible" and int(address) <= 1:
                return None  # :: and ::1 are themselves, not 0.0.0.0 and 0.0.0.1
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), form
    return None


def refusal(address: IPAddress, allow_networks: Sequence[IPNetwork]) -> str | None:
    """None if the proxy may dial `address`; else why not.

    The metadata addresses are refused always (in any form, inside an allowed network
    too). An address inside one of `allow_networks` may be dialled; so may an IPv6 form
    whose embedded IPv4 address is inside one. Anything else must be globally routable.
    """
    address = _plain(address)
    inner = embedded_ipv4(address)
    if address in METADATA_ADDRESSES or (inner is not None and inner[0] in METADATA_ADDRESSES):
        return "cloud metadata address"
    if _within(address, allow_networks):
        return None
    if inner is not None:
        embedded, form = inner
        if _within(embedded, allow_networks):
            return None
        reason = _special(embedded)
        if reason is not None:
            return f"not globally routable: {reason} (as {form} {address})"
        return None
    reason = _special(address)
    return None if reason is None else f"not globally routable: {reason}"


def own_address_refusal(address: IPAddress, allow_networks: Sequence[IPNetwork]) -> str | None:
    """Why the proxy may not dial `address` as one of this host's own addresses; None if
    it is not one, or if the admin opened it: one of `allow_networks` names it alone (a
    /32, a /128), or is a loopback network (every address in it is this host's).

    A host reaches its own addresses, public ones too, over `lo`, where services bound to
    every interface and firewalled from the outside answer it; the proxy runs on the
    host. An internal network opened for its services (10.0.0.0/8) opens the other
    hosts in it, not the node's own address there. Judged by the kernel's route, at
    each dial (addresses change)."""
    address = _plain(address)
    inner = embedded_ipv4(address)
    if _opens_own(address, allow_networks) or (
        inner is not None and _opens_own(inner[0], allow_networks)
    ):
        return None
    if not _routed_locally(address):
        return None
    return "an address of this host (the node's own services are not egress)"


def _routed_locally(address: IPAddress) -> bool:
    """Does this host route `address` to itself? A UDP socket's connect looks the route
    up and sends nothing: for a local destination the kernel's source is the address
    itself (its local route's preferred source) or a loopback address."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((str(address), 9))
            source = ipaddress.ip_address(str(probe.getsockname()[0]).split("%", 1)[0])
    except (OSError, ValueError):
        return False  # no route (or no such family here): the dial fails on its own
    inner = embedded_ipv4(source)
    return source == address or source.is_loopback or (inner is not None and inner[0].is_loopback)


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """DONJON_EGRESS_ALLOW_NETWORKS: CIDRs separated by commas or spaces (a bare address
    is its own /32 or /128). `AddressError` names the first bad entry."""
    out: list[IPNetwork] = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=True)
        except ValueError as e:
            raise AddressError(
                f"{item!r} is not a network ({e})",
                hint="give CIDRs such as 10.20.0.0/16 or 127.0.0.2/32, separated by commas",
            ) from None
        if network not in out:
            out.append(network)
    return tuple(out)


def _plain(address: IPAddress) -> IPAddress:
    """`address` without an IPv6 zone (``fe80::1%eth0`` is judged as ``fe80::1``)."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return ipaddress.IPv6Address(int(address))
    return address


def _opens_own(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    """Whether one of `networks` opens this host's own `address` (see own_address_refusal)."""
    return any(
        address.version == n.version and address in n and (n.num_addresses == 1 or n.is_loopback)
        for n in networks
    )


def _within(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def _special(address: IPAddress) -> str | None:
    """The special-purpose range `address` is in, or None if it is globally routable."""
    if isinstance(address, ipaddress.IPv4Address):
        return next((why for net, why in _SPECIAL_V4 if address in net), None)
    reason = next((why for net, why in _SPECIAL_V6 if address in net), None)
    if reason is None and address not in _GLOBAL_UNICAST_V6:
        reason = "reserved (outside global unicast 2000::/3)"
    return reason
