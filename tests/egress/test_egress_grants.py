"""`parse_grant` and `Allowlist.match`: exactly the granted host:port pairs, nothing else."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.egress.addresses import parse_networks
from donjon.egress.grants import (
    Allowlist,
    EgressGrant,
    EgressGrantError,
    parse_grant,
    parse_grant_syntax,
)

#: No deadline (a loaded 2-core machine), no example database written, the same examples
#: every run.
PROPERTY = settings(deadline=None, database=None, derandomize=True)

ALLOW = Allowlist.parse(["api.example.com:443", "*.s3.example.com:443", "93.184.216.34:8443"])


def test_a_name_grant_is_normalised() -> None:
    """Host lower-cased, one trailing dot dropped, the text kept as written."""
    grant = parse_grant("API.Example.COM.:443")
    assert grant == EgressGrant("API.Example.COM.:443", "api.example.com", False, 443)


def test_an_idn_grant_is_stored_as_ascii() -> None:
    """A Unicode name is held in IDNA (punycode) form, which clients send."""
    grant = parse_grant("bücher.example:443")
    assert grant.host == "xn--bcher-kva.example"
    assert grant.matches("xn--bcher-kva.example", 443)


def test_a_wildcard_grant_keeps_its_suffix() -> None:
    """`*.s3.example.com` is the suffix with the wildcard flag."""
    grant = parse_grant("*.s3.example.com:443")
    assert (grant.host, grant.wildcard, grant.port) == ("s3.example.com", True, 443)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("93.184.216.34:443", "93.184.216.34"),
        ("[2606:4700:4700::1111]:443", "2606:4700:4700::1111"),
    ],
)
def test_an_ip_grant_holds_its_address(text: str, address: str) -> None:
    """A canonical IP literal grant carries the address."""
    grant = parse_grant(text)
    assert grant.address == ipaddress.ip_address(address) and grant.host == address


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("api.example.com", "no port"),
        ("api.example.com:", "port"),
        ("api.example.com:0", "port"),
        ("api.example.com:65536", "port"),
        ("api.example.com:0443", "port"),
        ("api.example.com:1-1000", "port"),
        ("api.example.com:*", "port"),
        (":443", "no host"),
        ("*:443", "pattern"),
        ("*.*.example.com:443", "pattern"),
        ("a*.example.com:443", "pattern"),
        ("*example.com:443", "pattern"),
        ("api.*.com:443", "pattern"),
        ("*.:443", "not a DNS name"),
        ("-bad.example.com:443", "neither a DNS name"),
        ("a..b:443", "neither a DNS name"),
        ("under_score.example.com:443", "neither a DNS name"),
        ("api.example.com :443", "white space"),
        (" api.example.com:443", "white space"),
        ("2001:db8::1:443", "brackets"),
        ("[2001:db8::1]443", "[address]:port"),
        ("[2606:4700:4700:0::1111]:443", "non-canonical"),
        ("127.1:80", "non-canonical"),
        ("2130706433:80", "non-canonical"),
        ("0x7f.1:80", "non-canonical"),
        ("0177.0.0.1:80", "non-canonical"),
        ("93.184.216.34.:443", "non-canonical"),
        ("1.2.3.999:443", "neither a DNS name"),
        ("\uff10x7f000001:443", "neither a DNS name"),
        ("\uff11\uff12\uff17.0.0.1:443", "neither a DNS name"),
        ("localhost:80", "the host itself"),
        ("LOCALHOST.:80", "the host itself"),
        ("db.localhost:80", "the host itself"),
        ("*.localhost:80", "the host itself"),
        ("metadata.google.internal:80", "metadata"),
        ("169.254.169.254:80", "cloud metadata address"),
        ("127.0.0.1:8443", "loopback"),
        ("[::1]:443", "loopback"),
        ("0.0.0.0:443", "0.0.0.0/8"),
        ("[::]:443", "unspecified"),
        ("10.0.0.5:5432", "private"),
        ("100.64.0.1:443", "CGNAT"),
        ("[fd00::1]:443", "unique-local"),
        ("[fe80::1]:443", "link-local"),
        ("[::ffff:7f00:1]:443", "loopback"),
        ("[64:ff9b::a9fe:a9fe]:80", "cloud metadata address"),
    ],
)
def test_grants_the_proxy_would_refuse_are_errors(text: str, reason: str) -> None:
    """Each malformed or unreachable grant raises, naming the grant and the reason."""
    with pytest.raises(EgressGrantError) as e:
        parse_grant(text)
    assert reason in e.value.reason and repr(text) in e.value.message and e.value.hint


def test_syntax_alone_leaves_addresses_to_the_node() -> None:
    """The model's check accepts a private literal; the node's networks decide at deploy."""
    assert parse_grant_syntax("10.0.0.5:5432").address == ipaddress.ip_address("10.0.0.5")
    assert parse_grant("10.0.0.5:5432", parse_networks("10.0.0.0/8")).port == 5432
    with pytest.raises(EgressGrantError, match="cloud metadata"):
        parse_grant("169.254.169.254:80", parse_networks("169.254.0.0/16"))


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("api.example.com", 443),
        ("API.EXAMPLE.COM", 443),
        ("api.example.com.", 443),
        ("bucket.s3.example.com", 443),
        ("a.b.c.s3.example.com", 443),
        ("93.184.216.34", 8443),
    ],
)
def test_granted_destinations_match(host: str, port: int) -> None:
    """Exact names (any case, trailing dot), subdomains of a wildcard, the literal IP."""
    assert ALLOW.match(host, port) is not None


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("api.example.com", 80),
        ("api.example.com", 8443),
        ("www.example.com", 443),
        ("example.com", 443),
        ("xapi.example.com", 443),
        ("api.example.com.evil.net", 443),
        ("api.example.com:443", 443),
        ("s3.example.com", 443),
        ("evils3.example.com", 443),
        ("bucket.s3.example.com.evil.net", 443),
        (".s3.example.com", 443),
        ("a..s3.example.com", 443),
        ("bad_label.s3.example.com", 443),
        ("93.184.216.34", 443),
        ("1572395042", 8443),
        ("0x5db8d822", 8443),
        ("93.184.55330", 8443),
        ("[::ffff:93.184.216.34]", 8443),
        ("93.184.216.34.", 8443),
        ("\uff19\uff13.184.216.34", 8443),
        ("127.0.0.1", 443),
        ("169.254.169.254", 80),
        ("", 443),
    ],
)
def test_everything_else_is_denied(host: str, port: int) -> None:
    """Other ports, hosts, suffix look-alikes and every other notation of a granted IP."""
    assert ALLOW.match(host, port) is None


def test_an_empty_allowlist_denies_everything() -> None:
    """No grants: nothing matches."""
    assert not Allowlist([]) and Allowlist([]).match("api.example.com", 443) is None


@PROPERTY
@given(st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=1, max_value=65535))
def test_no_ip_literal_matches_a_name_grant(n: int, port: int) -> None:
    """An address in any notation never falls under a name or wildcard grant."""
    allow = Allowlist.parse([f"example.com:{port}", f"*.example.com:{port}"])
    address = ipaddress.IPv4Address(n)
    for host in (str(address), str(n), hex(n), f"[::ffff:{address}]"):
        assert allow.match(host, port) is None


@PROPERTY
@given(st.from_regex(r"[a-z0-9.*:\[\]-]{0,30}", fullmatch=True))
def test_parse_grant_raises_only_its_own_error(text: str) -> None:
    """Any text either parses or raises EgressGrantError (never another exception)."""
    try:
        grant = parse_grant(text)
    except EgressGrantError:
        return
    assert (
        grant.matches(
            grant.host
            if grant.address is None or grant.address.version == 4
            else f"[{grant.host}]",
            grant.port,
        )
        or grant.wildcard
    )
