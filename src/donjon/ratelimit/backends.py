"""Which backend holds the node's limits: its own memory, or a Redis shared with other nodes.

`open_shared` makes the Redis backend when DONJON_REDIS_URL is set (it connects
on first use: a node starts even while Redis is down). `share` wraps it in the
failure behaviour of ratelimit/failover.py: rates and slots fall back to the
node's own memory ones, quotas fail closed, and an outage is reported once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from donjon.config import Settings
from donjon.ratelimit.failover import (
    BackendHealth,
    FailClosedQuotaCounter,
    FailoverConcurrencyLimiter,
    FailoverRateLimiter,
    OnChange,
)
from donjon.ratelimit.interface import ConcurrencyLimiter, LimiterUnavailable, RateLimiter

if TYPE_CHECKING:  # imported where used: a node without Redis never loads its client
    from donjon.ratelimit.redis import RedisLimiter

__all__ = ["SharedLimits", "describe_backend", "open_shared", "share"]


def open_shared(settings: Settings) -> RedisLimiter | None:
    """The Redis backend DONJON_REDIS_URL names; None when it is unset (memory limits)."""
    if settings.redis_url is None:
        return None
    from donjon.ratelimit.redis import RedisLimiter  # redis.asyncio: 20 MiB, 0.1 s to import

    return RedisLimiter(
        settings.redis_url.reveal(),
        shown_url=settings.redis_url_shown,
        max_waiters=settings.sandbox.max_queued_per_function,
        max_waiting=settings.sandbox.max_queued,
    )


@dataclass(frozen=True)
class SharedLimits:
    """The node's three roles over one shared backend, with their failure behaviour."""

    backend: RedisLimiter
    health: BackendHealth
    rates: FailoverRateLimiter
    #: None until the node has memory slots to fall back to (`share`'s slots_fallback).
    slots: FailoverConcurrencyLimiter | None
    quotas: FailClosedQuotaCounter


def share(
    backend: RedisLimiter,
    *,
    rate_fallback: RateLimiter,
    slots_fallback: ConcurrencyLimiter | None = None,
    on_change: OnChange | None = None,
) -> SharedLimits:
    """The roles a node uses when `backend` is in force (see ratelimit/failover.py)."""
    health = BackendHealth(f"Redis at {backend.shown_url}", on_change)
    return SharedLimits(
        backend=backend,
        health=health,
        rates=FailoverRateLimiter(backend, rate_fallback, health),
        slots=(
            FailoverConcurrencyLimiter(backend, slots_fallback, health)
            if slots_fallback is not None
            else None
        ),
        quotas=FailClosedQuotaCounter(backend.quotas, health),
    )


async def describe_backend(settings: Settings) -> tuple[str, bool | None, str, list[str]]:
    """(backend, answers, detail, risks) for `donjon doctor`: "memory" (answers None:
    nothing to ask) or "redis", whether it answered a PING just now, and what in it puts
    the limits at risk (ratelimit/redis_posture.py)."""
    backend = open_shared(settings)
    if backend is None or settings.redis_url is None:
        detail = "in this process (DONJON_REDIS_URL unset): each node limits alone"
        return "memory", None, detail, []
    from donjon.ratelimit.redis_posture import redis_risks

    try:
        try:
            await backend.ping()
        except LimiterUnavailable as e:
            answers, detail = False, e.message
        else:
            answers, detail = True, f"shared by every node using {settings.redis_url_shown}"
        risks = await redis_risks(
            backend,
            settings.redis_url.reveal(),
            answers=answers,
            egress_networks=settings.egress.allow_networks,
        )
    finally:
        await backend.close()
    return "redis", answers, detail, risks
