"""What `donjon doctor` warns of in the Redis the shared limits live in: risks to the limits.

Each risk is one sentence saying what it lets happen and how to close it:

- the server takes clients without a password: anyone who reaches it can reset every
  quota (`FLUSHDB`) or hold every slot;
- it is reached in clear (`redis://`) on a host other than loopback: its password and
  every count cross the network unencrypted, and anyone on the path can change them;
- `rediss://` with `ssl_cert_reqs=none`: TLS that anyone on the path can pose as;
- its `maxmemory-policy` evicts keys: every key Donjon writes has a TTL, so a
  `volatile-*` policy as much as an `allkeys-*` one drops quota usage and held slots
  under memory pressure (the day's quotas counted again from 0);
- it keeps nothing on disk (no AOF, no RDB snapshots): a restart forgets the day's
  quota usage;
- its address is in DONJON_EGRESS_ALLOW_NETWORKS: a function granted egress there can
  reach it, and do what any client without a password can.

Information for the operator, not a control: a Redis that does not answer is judged
from its URL alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from donjon.ratelimit.interface import LimiterUnavailable

if TYPE_CHECKING:
    from donjon.egress.addresses import IPNetwork
    from donjon.ratelimit.redis import RedisLimiter

__all__ = ["redis_risks"]

_LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


def _loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_risks(url: str) -> list[str]:
    parts = urlsplit(url)
    risks: list[str] = []
    if parts.scheme == "redis" and not _loopback(parts.hostname or ""):
        risks.append(
            f"Redis at {parts.hostname} is reached in clear (redis://): its password and every "
            "count cross the network unencrypted; use rediss:// (TLS)"
        )
    query = {name.lower(): value.lower() for name, value in parse_qsl(parts.query)}
    if parts.scheme == "rediss" and query.get("ssl_cert_reqs") in ("none", "optional"):
        risks.append(
            "rediss:// with ssl_cert_reqs=none does not verify Redis's certificate: anyone on "
            "the path can pose as it; give its CA with ssl_ca_certs=PATH instead"
        )
    return risks


async def _server_risks(backend: RedisLimiter) -> list[str]:
    risks: list[str] = []
    if not backend.authenticates:
        risks.append(
            "Redis answers clients without a password: anyone who reaches it can reset every "
            "quota or hold every slot; set requirepass (or an ACL user) and put it in the URL"
        )
    policy = str((await backend.info("memory")).get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        risks.append(
            f"Redis's maxmemory-policy {policy} evicts keys, and every Donjon key has a TTL: "
            "under memory pressure quotas restart from 0 and held slots are lost; set "
            "maxmemory-policy noeviction"
        )
    aof = (await backend.info("persistence")).get("aof_enabled")
    if str(aof) == "0" and await backend.setting("save") == "":
        risks.append(
            "Redis keeps nothing on disk (no AOF, no snapshots): a restart forgets the day's "
            "quota usage; set appendonly yes"
        )
    return risks


async def _egress_risk(url: str, networks: Sequence[IPNetwork]) -> list[str]:
    """The network of `networks` that opens Redis's address to functions, if one does."""
    parts = urlsplit(url)
    if not networks or parts.scheme == "unix" or not parts.hostname:
        return []
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, parts.port or 6379, type=socket.SOCK_STREAM
        )
    except OSError:  # not resolved here: nothing to judge
        return []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        for network in networks:
            if address.version == network.version and address in network:
                return [
                    f"Redis's address {address} is in DONJON_EGRESS_ALLOW_NETWORKS ({network}): "
                    "a function granted egress to it can reset every quota or hold every "
                    "slot; keep Redis out of the networks functions may reach"
                ]
    return []


async def redis_risks(
    backend: RedisLimiter, url: str, *, answers: bool, egress_networks: Sequence[IPNetwork] = ()
) -> list[str]:
    """Risks of the Redis at `url` (`backend`) to the limits; from the URL alone if the
    server does not answer. `egress_networks`: the internal networks functions may be
    granted (DONJON_EGRESS_ALLOW_NETWORKS)."""
    risks = _url_risks(url) + await _egress_risk(url, egress_networks)
    if answers:
        with contextlib.suppress(LimiterUnavailable):  # it stopped answering: the URL's
            risks += await _server_risks(backend)
    return risks
