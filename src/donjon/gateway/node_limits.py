"""The node's limiters: rate buckets, concurrency slots and quota counters in memory,
or shared with other nodes in Redis (DONJON_REDIS_URL), with the memory ones as the
fallback of an outage (ratelimit/failover.py), each outage and its end audited."""

from __future__ import annotations

from dataclasses import dataclass

from donjon.audit import AuditEvent, AuditLog
from donjon.config import Settings
from donjon.ratelimit import (
    ConcurrencyLimiter,
    MemoryConcurrencyLimiter,
    MemoryRateLimiter,
    QuotaCounter,
    RateLimiter,
)
from donjon.ratelimit.backends import SharedLimits, open_shared, share
from donjon.ratelimit.failover import OnChange
from donjon.ratelimit.memory_quota import MemoryQuotaCounter
from donjon.store import QuotaStore

__all__ = ["NodeLimits", "open_limits"]


@dataclass(frozen=True)
class NodeLimits:
    """What a node's calls are counted against (gateway/rate_buckets.py, slots.py,
    quota_check.py)."""

    limiter: RateLimiter
    slots: ConcurrencyLimiter
    #: This node's own calls, always in memory.
    node_slots: MemoryConcurrencyLimiter
    quota_counter: QuotaCounter
    #: The limits shared in Redis; None: memory only.
    shared: SharedLimits | None


def open_limits(settings: Settings, audit: AuditLog, quota_store: QuotaStore) -> NodeLimits:
    """In memory; with DONJON_REDIS_URL, shared by every node of that Redis: in an outage
    rates and slots fall back to this node's memory ones and quotas refuse."""
    limiter: RateLimiter = MemoryRateLimiter()
    slots: ConcurrencyLimiter = _memory_slots(settings)
    quota_counter: QuotaCounter = MemoryQuotaCounter(quota_store)
    shared = None
    backend = open_shared(settings)
    if backend is not None:
        shared = share(
            backend,
            rate_fallback=limiter,
            slots_fallback=slots,
            on_change=_report_limits(audit, backend.shown_url),
        )
        limiter = shared.rates
        if shared.slots is not None:  # always: given slots_fallback
            slots = shared.slots
        quota_counter = shared.quotas
    return NodeLimits(limiter, slots, _memory_slots(settings), quota_counter, shared)


def _memory_slots(settings: Settings) -> MemoryConcurrencyLimiter:
    """Slots in memory, their waits bounded as the pool's are (DONJON_MAX_QUEUED*)."""
    sandbox = settings.sandbox
    return MemoryConcurrencyLimiter(
        max_waiters=sandbox.max_queued_per_function, max_waiting=sandbox.max_queued
    )


def _report_limits(audit: AuditLog, shown_url: str) -> OnChange:
    """An outage of the shared limits store, and its end, as one audit record each (the
    monitor raises the first as a `limits.unavailable` alert: monitor/limits_rule.py)."""

    async def report(available: bool, reason: str) -> None:
        await audit.record(
            AuditEvent(
                "system",
                "limits.available" if available else "limits.unavailable",
                "limits",
                "ok" if available else "error",
                {
                    "store": f"Redis at {shown_url}",
                    "reason": reason[:300],
                    "fallback": ""
                    if available
                    else "rates and concurrency per node; quotas refused",
                },
            )
        )

    return report
