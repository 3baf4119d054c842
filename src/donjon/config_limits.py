"""The settings of connections, requests and limits (docs/limits.md, docs/security.md):
values only; `donjon.config` reads them from the environment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # values only: the sources are read by donjon.config
    from donjon.config_sources import SettingsInput

__all__ = [
    "ConnectionSettings",
    "LimitSettings",
    "QueueSettings",
    "RequestSettings",
    "parse_rate",
    "queue_settings",
]


@dataclass(frozen=True)
class ConnectionSettings:
    """Limits on client connections and request heads (docs/security.md)."""

    #: Seconds for a connection's TLS handshake (DONJON_TLS_HANDSHAKE_TIMEOUT_S).
    handshake_timeout_s: float = 10.0
    #: Seconds for a whole request head, from its first byte or from connecting
    #: (DONJON_HEAD_TIMEOUT_S).
    head_timeout_s: float = 10.0
    #: Seconds a request body, or an answer the client reads, may go without progress
    #: (DONJON_BODY_TIMEOUT_S; gateway/write_stall.py for the answer).
    body_timeout_s: float = 30.0
    #: Seconds an idle keep-alive connection stays open (DONJON_KEEPALIVE_TIMEOUT_S).
    keepalive_timeout_s: int = 5
    #: Bytes of request line and headers (DONJON_MAX_HEAD_BYTES).
    max_head_bytes: int = 64 * 1024
    #: Header fields per request (DONJON_MAX_HEADERS).
    max_headers: int = 100
    #: Open connections per client address (DONJON_MAX_CONNECTIONS_PER_CLIENT).
    max_connections_per_client: int = 64
    #: Open connections in all (DONJON_MAX_CONNECTIONS); 0: half the open-file limit.
    max_connections: int = 0
    #: Requests (head complete) being served at once (DONJON_MAX_IN_FLIGHT).
    max_in_flight: int = 1024
    #: Past this lag of the event loop (seconds; the gateway's CPU is saturated), new
    #: requests are shed with 503 at once (DONJON_MAX_LOOP_LAG_S; 0: never for lag).
    max_loop_lag_s: float = 0.25
    #: While the pool overflows, a share of the invoke calls (PIE's, gateway/lag_shed.py)
    #: is shed to keep the loop's lag near this (DONJON_LAG_TARGET_MS; off with
    #: max_loop_lag_s 0), updated every lag_interval_s (DONJON_LAG_INTERVAL_MS).
    lag_target_s: float = 0.01
    lag_interval_s: float = 0.015
    #: Seconds for a whole request body, from the end of its head, however it trickles
    #: (DONJON_BODY_DEADLINE_S; not counted while the gateway itself has paused reading).
    body_deadline_s: float = 60.0
    #: After a 429 with Retry-After, seconds the connection is not read again
    #: (at most the Retry-After; not for trusted proxies) (DONJON_REFUSAL_HOLD_S; 0: never).
    refusal_hold_s: float = 1.0
    #: New connections per second per client address (IPv6: per /64), checked at accept
    #: before the TLS handshake (DONJON_CONNECT_RATE; trusted proxies exempt).
    connect_rate: float = 100.0
    #: New connections a client address may open at once (DONJON_CONNECT_BURST): four
    #: times the 64 it may hold open.
    connect_burst: int = 256


@dataclass(frozen=True)
class RequestSettings:
    """Limits on request bodies and function results (docs/limits.md)."""

    #: The largest request body any function may take: the ceiling of every manifest's
    #: `limits.body` (default 1 MiB each) (DONJON_MAX_BODY_BYTES; at most 32 MiB).
    max_body_bytes: int = 6 * 1024 * 1024
    #: The largest result a function may return, checked in its sandbox and again by
    #: the gateway (DONJON_MAX_RESPONSE_BYTES; at most 6 MiB, the frame cap).
    max_response_bytes: int = 6 * 1024 * 1024


_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


def parse_rate(text: str) -> tuple[int, float]:
    """`50/second` (already checked by its pattern) -> (50, 1.0)."""
    count, _, unit = text.partition("/")
    return int(count), _PERIODS[unit]


@dataclass(frozen=True)
class LimitSettings:
    """Issue 15's rate buckets and concurrency caps (docs/limits.md)."""

    #: Each principal's bucket unless its key or role sets one (DONJON_RATE_PER_PRINCIPAL,
    #: DONJON_BURST_PER_PRINCIPAL; burst None: the rate's count).
    rate_per_principal: tuple[int, float] = (1000, 1.0)
    burst_per_principal: int | None = None
    #: Each client address's bucket on `auth: public` triggers (DONJON_RATE_PER_CLIENT,
    #: DONJON_BURST_PER_CLIENT).
    rate_per_client: tuple[int, float] = (100, 1.0)
    burst_per_client: int | None = None
    #: The share of a function's rate one principal may take (DONJON_PRINCIPAL_SHARE):
    #: its principal x function bucket refills at this share, and holds the whole burst.
    principal_share: float = 0.5
    #: Calls in flight per principal unless its key or role sets it
    #: (DONJON_CONCURRENCY_PER_PRINCIPAL), and on this node (DONJON_MAX_CONCURRENCY).
    concurrency_per_principal: int = 64
    max_concurrency: int = 256
    #: Each principal's bucket for the admin API, every route under /v1/ but the invoke
    #: paths, whatever its key or role sets for calls (DONJON_ADMIN_RATE_PER_PRINCIPAL,
    #: DONJON_ADMIN_BURST_PER_PRINCIPAL; gateway/admin_rate.py).
    admin_rate_per_principal: tuple[int, float] = (100, 1.0)
    admin_burst_per_principal: int = 1000
    #: Functions one principal may own (DONJON_MAX_FUNCTIONS_PER_OWNER): what each function
    #: keeps (logs, dead letters, results, its bundle) is bounded per function.
    max_functions_per_owner: int = 1000
    #: Versions whose bundle trees a deployed function keeps, its newest and the current
    #: one (DONJON_KEEP_BUNDLES; lifecycle/bundle_prune.py): older trees are removed.
    keep_bundles: int = 5


@dataclass(frozen=True)
class QueueSettings:
    """The async queue's workers on this node (triggers/queue/; docs/triggers.md)."""

    #: Deliveries this node runs at once (DONJON_QUEUE_WORKERS).
    workers: int = 4
    #: Seconds a delivery's lease lasts; renewed while it runs, so it only expires when
    #: its node died: then another claim runs it again (DONJON_QUEUE_LEASE_S).
    lease_s: float = 60.0
    #: Seconds between idle workers' looks for due invocations (DONJON_QUEUE_POLL_S).
    poll_s: float = 1.0
    #: Dead-lettered invocations a function keeps; at that many its enqueues are refused
    #: until some are redriven or purged (DONJON_QUEUE_MAX_DEAD; docs/limits.md).
    max_dead: int = 10_000
    #: Succeeded invocations (event and result) a function keeps, its newest; the oldest
    #: past it are forgotten (DONJON_QUEUE_KEEP_SUCCEEDED; docs/limits.md).
    keep_succeeded: int = 10_000
    #: Pending invocations the node holds, every function's together; past it enqueues
    #: are refused (DONJON_QUEUE_MAX_PENDING; docs/limits.md).
    max_pending: int = 100_000


def limit_settings(raw: SettingsInput) -> LimitSettings:
    """The rate buckets and caps as the environment (or config file) gave them."""
    return LimitSettings(
        rate_per_principal=parse_rate(raw.RATE_PER_PRINCIPAL),
        burst_per_principal=raw.BURST_PER_PRINCIPAL,
        rate_per_client=parse_rate(raw.RATE_PER_CLIENT),
        burst_per_client=raw.BURST_PER_CLIENT,
        principal_share=raw.PRINCIPAL_SHARE,
        concurrency_per_principal=raw.CONCURRENCY_PER_PRINCIPAL,
        max_concurrency=raw.MAX_CONCURRENCY,
        admin_rate_per_principal=parse_rate(raw.ADMIN_RATE_PER_PRINCIPAL),
        admin_burst_per_principal=raw.ADMIN_BURST_PER_PRINCIPAL,
        max_functions_per_owner=raw.MAX_FUNCTIONS_PER_OWNER,
        keep_bundles=raw.KEEP_BUNDLES,
    )


def queue_settings(raw: SettingsInput) -> QueueSettings:
    """The queue's settings as the environment (or config file) gave them."""
    return QueueSettings(
        workers=raw.QUEUE_WORKERS,
        lease_s=raw.QUEUE_LEASE_S,
        poll_s=raw.QUEUE_POLL_S,
        max_dead=raw.QUEUE_MAX_DEAD,
        keep_succeeded=raw.QUEUE_KEEP_SUCCEEDED,
        max_pending=raw.QUEUE_MAX_PENDING,
    )
