"""`parse_ip_literal`, `refusal`, `parse_networks`: what the egress proxy may dial."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.egress.addresses import (
    AddressError,
    IPAddress,
    embedded_ipv4,
    own_address_refusal,
    parse_ip_literal,
    parse_networks,
    refusal,
)

#: No deadline (a loaded 2-core machine), no example database written, the same examples
#: every run.
PROPERTY = settings(deadline=None, database=None, derandomize=True)

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
V4 = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0X7F000001",
        "0177.0.0.1",
        "0177.0000.0.01",
        "127.1",
        "127.0.1",
        "0x7f.1",
        "0x7f.0.0.0x1",
        "017700000001",
        "127.0.0.1.",
    ],
)
def test_every_ipv4_notation_reads_as_the_address(text: str) -> None:
    """Decimal, hex, octal and short forms (what inet_aton takes) are all 127.0.0.1."""
    assert parse_ip_literal(text) == LOOPBACK


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("::ffff:7f00:1", "::ffff:127.0.0.1"),
        ("[fe80::1%eth0]", "fe80::1"),
        ("[64:ff9b::a9fe:a9fe]", "64:ff9b::169.254.169.254"),
    ],
)
def test_ipv6_literals_with_and_without_brackets(text: str, address: str) -> None:
    """IPv6 literals are read bracketed or not; a zone is dropped."""
    assert parse_ip_literal(text) == ipaddress.IPv6Address(address)


@pytest.mark.parametrize(
    "text", ["api.example.com", "localhost", "1e100.net", "999999999999", "256.1.1.1", "[x]", ""]
)
def test_names_and_non_addresses_are_none(text: str) -> None:
    """Names, and numbers no resolver reads as an address, are not literals."""
    assert parse_ip_literal(text) is None


@PROPERTY
@given(V4, st.sampled_from(["dec", "hex", "oct", "a.b", "a.b.c", "octets-hex"]))
def test_any_notation_agrees_with_the_system_resolver(
    address: ipaddress.IPv4Address, form: str
) -> None:
    """Whatever getaddrinfo reads as a numeric host, parse_ip_literal reads the same way."""
    n = int(address)
    o = address.packed
    text = {
        "dec": str(n),
        "hex": hex(n),
        "oct": f"0{n:o}",
        "a.b": f"{o[0]}.{n & 0xFFFFFF}",
        "a.b.c": f"{o[0]}.{o[1]}.{n & 0xFFFF}",
        "octets-hex": ".".join(hex(b) for b in o),
    }[form]
    info = socket.getaddrinfo(text, None, socket.AF_INET, flags=socket.AI_NUMERICHOST)
    assert ipaddress.IPv4Address(info[0][4][0]) == address
    assert parse_ip_literal(text) == address


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private 10/8"),
        ("172.16.0.1", "private 172.16/12"),
        ("192.168.1.1", "private 192.168/16"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "CGNAT 100.64/10"),
        ("100.127.255.254", "CGNAT 100.64/10"),
        ("0.0.0.0", "0.0.0.0/8"),  # noqa: S104 (an address to refuse, not one bound)
        ("0.1.2.3", "0.0.0.0/8"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "reserved 240/4"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.2.1", "documentation"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "unique-local fc00::/7"),
        ("fd12:3456::1", "unique-local fc00::/7"),
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("64:ff9b:1::1", "local-use NAT64"),
        ("::ffff:127.0.0.1", "loopback 127/8 (as IPv4-mapped"),
        ("::ffff:10.0.0.1", "private 10/8 (as IPv4-mapped"),
        ("::127.0.0.1", "loopback 127/8 (as IPv4-compatible"),
        ("::ffff:0:7f00:1", "loopback 127/8 (as IPv4-translated"),
        ("64:ff9b::127.0.0.1", "loopback 127/8 (as NAT64"),
        ("64:ff9b::100.64.0.1", "CGNAT 100.64/10 (as NAT64"),
        ("2002:7f00:1::1", "loopback 127/8 (as 6to4"),
        ("2002:c0a8:101::", "private 192.168/16 (as 6to4"),
        ("4000::1", "outside global unicast"),
    ],
)
def test_non_global_addresses_are_refused_with_the_range(text: str, reason: str) -> None:
    """Each special-purpose range, in each IPv6 form that embeds IPv4, is refused by name."""
    got = refusal(ipaddress.ip_address(text), ())
    assert got is not None and got.startswith("not globally routable: ") and reason in got


@pytest.mark.parametrize(
    "text",
    [
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "64:ff9b::169.254.169.254",
        "2002:a9fe:a9fe::",
        "fd00:ec2::254",
        "169.254.170.2",
        "100.100.100.200",
    ],
)
def test_metadata_is_refused_even_in_an_allowed_network(text: str) -> None:
    """The cloud metadata address, in any form, is refused although its network is open."""
    everything = parse_networks("0.0.0.0/0, ::/0")
    assert refusal(ipaddress.ip_address(text), everything) == "cloud metadata address"


@pytest.mark.parametrize(
    "text",
    ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8"],
)
def test_global_addresses_may_be_dialled(text: str) -> None:
    """Public unicast addresses (and IPv6 forms of public IPv4) are not refused."""
    assert refusal(ipaddress.ip_address(text), ()) is None


def test_allowed_networks_open_their_addresses_only() -> None:
    """DONJON_EGRESS_ALLOW_NETWORKS opens what it lists (and mapped forms of it), no more."""
    networks = parse_networks("127.0.0.2/32")
    assert refusal(ipaddress.ip_address("127.0.0.2"), networks) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.2"), networks) is None
    assert refusal(ipaddress.ip_address("127.0.0.1"), networks) is not None
    assert refusal(ipaddress.ip_address("::1"), networks) is not None


@PROPERTY
@given(V4)
def test_an_embedded_ipv4_is_judged_as_itself(address: ipaddress.IPv4Address) -> None:
    """Mapped, NAT64 and 6to4 forms are refused exactly when the IPv4 address is."""
    plain = refusal(address, ())
    forms: list[IPAddress] = [
        ipaddress.IPv6Address(0xFFFF << 32 | int(address)),
        ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address)),
        ipaddress.IPv6Address(0x2002 << 112 | int(address) << 80 | 1),
    ]
    for form in forms:
        inner = embedded_ipv4(form)
        assert inner is not None and inner[0] == address
        assert (refusal(form, ()) is None) == (plain is None)


def test_parse_networks_accepts_commas_and_spaces() -> None:
    """CIDRs separated by commas or spaces; a bare address is its own /32."""
    assert parse_networks(" 10.0.0.0/8, 127.0.0.2 fd00::/8,,") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.2/32"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert parse_networks("") == ()


@pytest.mark.parametrize("text", ["10.0.0.1/8", "10.0.0.0/33", "example.com", "10.0.0.0/8;rm"])
def test_parse_networks_names_the_bad_entry(text: str) -> None:
    """A malformed entry (host bits set, bad prefix, a name) is an error naming it."""
    with pytest.raises(AddressError) as e:
        parse_networks(f"192.168.0.0/16,{text}")
    assert repr(text) in e.value.message and e.value.hint


def test_own_address_refusal_is_by_route_and_yields_to_allowed_networks() -> None:
    """This host's own addresses (routed over lo) are refused unless an admin opened them."""
    mine = ipaddress.ip_address("127.0.0.5")
    assert "an address of this host" in (own_address_refusal(mine, ()) or "")
    assert own_address_refusal(ipaddress.ip_address("::ffff:127.0.0.5"), ()) is not None
    assert own_address_refusal(mine, parse_networks("127.0.0.0/24")) is None
    # Documentation space is no address of this host (it may have no route at all).
    assert own_address_refusal(ipaddress.ip_address("203.0.113.9"), ()) is None
