"""`broad_grants` and `egress_refusals`: one definition for the deploy gate and DJ-MF-002."""

from __future__ import annotations

import ipaddress

import pytest

from donjon.manifest import Permissions
from donjon.manifest.grants import broad_grants, broad_reason, egress_refusals, grant_problem


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("169.254.169.254:80", "cloud metadata address"),
        ("127.0.0.1:8443", "loopback"),
        ("10.0.0.5:5432", "private 10/8"),
        ("100.64.0.1:443", "CGNAT"),
        ("0.0.0.0:443", "0.0.0.0/8"),
        ("[::1]:443", "loopback"),
        ("[fd00::1]:443", "unique-local"),
    ],
)
def test_egress_the_proxy_refuses_is_named(item: str, reason: str) -> None:
    """A grant of a non-global or metadata address is refused with the proxy's reason."""
    refused = egress_refusals(Permissions(egress=(item,)), ())
    assert len(refused) == 1 and item in refused[0] and reason in refused[0]
    assert reason in grant_problem("egress", item)


@pytest.mark.parametrize(
    "item", ["127.1:80", "2130706433:80", "0x7f.1:80", "localhost:80", "LOCALHOST.:80"]
)
def test_unusable_egress_is_refused_by_the_model(item: str) -> None:
    """IP shorthands and the host's own names never load as a grant (and DJ-MF-002 names them)."""
    with pytest.raises(ValueError, match="egress grant"):
        Permissions(egress=(item,))
    assert grant_problem("egress", item)


def test_an_allowed_network_opens_its_addresses_but_never_metadata() -> None:
    """DONJON_EGRESS_ALLOW_NETWORKS admits a private grant; metadata stays refused inside it."""
    networks = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("169.254.0.0/16"))
    perms = Permissions(egress=("10.0.0.5:5432", "169.254.169.254:80"))
    refused = egress_refusals(perms, networks)
    assert refused == ["permissions.egress grants '169.254.169.254:80': cloud metadata address"]
    assert grant_problem("egress", "10.0.0.5:5432", networks) == ""


def test_exact_grants_are_neither_broad_nor_refused() -> None:
    """Exact secrets, invokes, public host:port and subdomain wildcards pass."""
    perms = Permissions(
        secrets=("db_url",),
        egress=("api.stripe.com:443", "*.s3.example.com:443", "93.184.216.34:443"),
        invoke=("billing",),
    )
    assert broad_grants(perms) == []
    assert egress_refusals(perms, ()) == []


def test_a_wildcard_over_a_top_level_domain_is_broad() -> None:
    """`*.com:443` is honoured by the proxy but over-broad (an admin may allow it)."""
    perms = Permissions(egress=("*.com:443",))
    assert egress_refusals(perms, ()) == []
    assert broad_grants(perms) == [
        "permissions.egress grants '*.com:443': a wildcard over the whole top-level domain .com"
    ]


@pytest.mark.parametrize("kind", ["secrets", "invoke"])
def test_a_wildcard_is_broad_in_names(kind: str) -> None:
    """A `*` anywhere in a secret or invoke grant is a wildcard grant."""
    assert broad_reason(kind, "billing-*") == "a wildcard"
