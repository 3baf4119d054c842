"""The connect rate's token buckets: per address, per IPv6 /64, proxies exempt, memory bounded."""

from __future__ import annotations

import ipaddress

import pytest

from donjon.client_network import client_network as client_key
from donjon.gateway.accept_gate import ConnectRate


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_gets_its_burst_then_the_rate() -> None:
    """3 at once, then refused until a token has refilled (1 a second)."""
    clock = _Clock()
    rate = ConnectRate(1.0, 3, clock=clock)
    assert [rate.admit("192.0.2.1") for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5
    assert not rate.admit("192.0.2.1")
    clock.now += 0.6
    assert rate.admit("192.0.2.1")
    assert not rate.admit("192.0.2.1")


def test_addresses_have_buckets_of_their_own() -> None:
    """One address's empty bucket does not refuse another's connections."""
    rate = ConnectRate(1.0, 2, clock=_Clock())
    assert [rate.admit("192.0.2.1") for _ in range(3)] == [True, True, False]
    assert rate.admit("192.0.2.2")


def test_ipv6_counts_per_slash_64() -> None:
    """Two addresses of one /64 share a bucket; a v4-mapped address is its IPv4 one."""
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    rate = ConnectRate(1.0, 2, clock=_Clock())
    assert rate.admit("2001:db8::1") and rate.admit("2001:db8::2")
    assert not rate.admit("2001:db8::3")


def test_trusted_proxies_are_exempt() -> None:
    """A trusted proxy's connections are never refused, and hold no bucket."""
    proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    rate = ConnectRate(1.0, 1, proxies=proxies, clock=_Clock())
    assert all(rate.admit("10.1.2.3") for _ in range(100))
    assert rate.tracked == 0


def test_idle_buckets_are_dropped() -> None:
    """A bucket untouched long enough to be full again is swept by later connections."""
    clock = _Clock()
    rate = ConnectRate(10.0, 10, clock=clock)
    for i in range(50):
        rate.admit(f"192.0.2.{i}")
    assert rate.tracked == 50
    clock.now += 2.0  # 10 tokens at 10/s: full after 1 s
    for _ in range(20):
        rate.admit("198.51.100.1")
    assert rate.tracked == 1


def test_the_table_is_capped() -> None:
    """Past `max_tracked` addresses the least recently seen is dropped (it starts full)."""
    clock = _Clock()
    rate = ConnectRate(1.0, 1, max_tracked=100, clock=clock)
    for i in range(1000):
        rate.admit(f"10.{i // 250}.{i % 250}.1")
    assert rate.tracked == 100
    assert not rate.admit("10.3.249.1")  # the most recent keeps its (empty) bucket


@pytest.mark.parametrize(("r", "b"), [(0.0, 1), (1.0, 0), (-1.0, 5)])
def test_a_bucket_must_be_positive(r: float, b: int) -> None:
    """No rate of 0 (off) or a burst below 1: the gate always holds."""
    with pytest.raises(ValueError, match="positive"):
        ConnectRate(r, b)
