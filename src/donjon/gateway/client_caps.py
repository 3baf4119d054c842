"""Open client connections counted by address, and refused over their caps.

Shared by every connection of one server (connections.py): at most `per_client`
open connections per client address (trusted proxies, which carry many clients'
connections, are held to the total only) and `total` in all. Over a cap, the
protocol closes the new connection at once; other clients' connections are never
touched. Refusals are logged at most once per LOG_EVERY_S.
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass, field

from donjon.config import ConnectionSettings
from donjon.gateway.accept_gate import IPNetwork, in_networks

__all__ = ["ClientConnections", "connection_cap"]

log = logging.getLogger("donjon")

LOG_EVERY_S = 10.0


def connection_cap(settings: ConnectionSettings) -> int:
    """The total cap: as set, else half the process's open-file limit (at least 64)."""
    if settings.max_connections:
        return settings.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(64, soft // 2)


@dataclass
class ClientConnections:
    """Open connections by client address, shared by every connection of one server."""

    per_client: int
    total: int
    #: Trusted proxies carry many clients' connections: only the total cap applies to them.
    proxies: tuple[IPNetwork, ...] = ()
    by_address: dict[str, int] = field(default_factory=dict)
    count: int = 0
    refused: int = 0  # since the last warning, which is at most one per LOG_EVERY_S
    warned_at: float = -LOG_EVERY_S

    def admit(self, address: str) -> bool:
        held = self.by_address.get(address, 0)
        over_per_client = held >= self.per_client and not self.is_proxy(address)
        if over_per_client or self.count >= self.total:
            self._refused(address, "per-address" if over_per_client else "total")
            return False
        self.by_address[address] = held + 1
        self.count += 1
        return True

    def is_proxy(self, address: str) -> bool:
        return in_networks(address, self.proxies)

    def _refused(self, address: str, cap: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self.warned_at >= LOG_EVERY_S:
            log.warning(
                "refused %d connection(s) over the connection caps (last: %s, over the %s cap)",
                self.refused,
                address,
                cap,
            )
            self.refused = 0
            self.warned_at = now

    def release(self, address: str) -> None:
        held = self.by_address.get(address, 0) - 1
        if held > 0:
            self.by_address[address] = held
        else:
            self.by_address.pop(address, None)
        self.count -= 1
