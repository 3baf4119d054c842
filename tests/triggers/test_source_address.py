"""triggers/source_address.py: what a source's secret may make the node dial."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

import pytest
from psycopg.conninfo import conninfo_to_dict

from donjon.egress.addresses import IPNetwork
from donjon.triggers.source_address import SourceAddressRefused, check_url, pin_dsn

LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"),)
WHAT = "the DSN in secret db"


def _pin(dsn: str, allow: Sequence[IPNetwork] = LOOPBACK) -> dict[str, str | int | None]:
    return conninfo_to_dict(asyncio.run(pin_dsn(dsn, allow, WHAT)))


def test_each_host_is_pinned_to_its_checked_address_and_no_password_file() -> None:
    pinned = _pin("postgresql://app:pw@127.0.0.1:5433,localhost:6000/orders?sslmode=require")
    assert pinned["host"] == "127.0.0.1,localhost"
    assert pinned["hostaddr"] == "127.0.0.1,127.0.0.1"
    assert pinned["port"] == "5433,6000"
    assert pinned["passfile"] == "/dev/null"
    assert (pinned["user"], pinned["password"], pinned["sslmode"]) == ("app", "pw", "require")


@pytest.mark.parametrize(
    ("dsn", "why"),
    [
        ("host=127.0.0.1 dbname=x", "not globally routable: loopback"),  # nothing opened
        ("host=169.254.169.254 dbname=x", "cloud metadata address"),
        ("host=10.1.2.3 dbname=x", "not globally routable: private"),
        ("postgresql://app@[::ffff:127.0.0.1]:5432/x", "loopback"),
        ("dbname=x", "names no TCP host"),
        ("host=/var/run/postgresql dbname=x", "names no TCP host"),
        ("host=127.0.0.1 hostaddr=10.0.0.1 dbname=x", "sets hostaddr"),
        ("host=127.0.0.1 passfile=/root/.pgpass dbname=x", "sets passfile"),
        ("service=orders", "sets service"),
        ("host=127.0.0.1 sslkey=/etc/ssl/private/node.key dbname=x", "sets sslkey"),
        ("host=a.example,b.example port=1,2,3 dbname=x", "ports that do not match"),
    ],
)
def test_refused(dsn: str, why: str) -> None:
    allow: tuple[IPNetwork, ...] = () if "metadata" not in why else LOOPBACK
    with pytest.raises(SourceAddressRefused, match=why):
        _pin(dsn, allow)


def test_metadata_is_refused_inside_an_opened_network() -> None:
    wide: tuple[IPNetwork, ...] = (ipaddress.ip_network("169.254.0.0/16"),)
    with pytest.raises(SourceAddressRefused, match="cloud metadata"):
        _pin("host=169.254.169.254 dbname=x", wide)
    assert _pin("host=169.254.1.1 dbname=x", wide)["hostaddr"] == "169.254.1.1"


def test_an_endpoint_url_is_checked_by_every_address() -> None:
    asyncio.run(check_url("http://127.0.0.1:4566", LOOPBACK, "the endpoint"))
    with pytest.raises(SourceAddressRefused, match="loopback"):
        asyncio.run(check_url("http://localhost:4566", (), "the endpoint"))
    with pytest.raises(SourceAddressRefused, match="private"):
        asyncio.run(check_url("https://192.168.1.10/", (), "the endpoint"))
