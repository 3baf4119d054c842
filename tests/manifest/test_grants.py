"""`broad_grants`: the one definition of an over-broad grant (deploy gate and DJ-MF-002)."""

from __future__ import annotations

import pytest

from donjon.manifest import Permissions
from donjon.manifest.grants import broad_grants, broad_reason


@pytest.mark.parametrize(
    "item",
    [
        "169.254.169.254:80",
        "127.0.0.1:8443",
        "127.1:80",
        "2130706433:80",
        "0x7f.1:80",
        "0.0.0.0:443",
        "localhost:80",
        "LOCALHOST.:80",
        "metadata.google.internal:80",
    ],
)
def test_broad_egress_is_named(item: str) -> None:
    """Loopback, link-local, every address and metadata names are broad in any notation."""
    assert broad_reason("egress", item)
    assert broad_grants(Permissions(egress=(item,))) == [
        f"permissions.egress grants {item!r}: {broad_reason('egress', item)}"
    ]


def test_exact_grants_are_not_broad() -> None:
    """Exact secrets, invokes and public host:port egress pass."""
    perms = Permissions(secrets=("db_url",), egress=("api.stripe.com:443",), invoke=("billing",))
    assert broad_grants(perms) == []


@pytest.mark.parametrize("kind", ["secrets", "invoke", "egress"])
def test_a_wildcard_is_broad_in_every_kind(kind: str) -> None:
    """A `*` anywhere is a wildcard grant."""
    assert broad_reason(kind, "billing-*") == "a wildcard"
