"""Limits against DoS and runaway bills: token buckets, concurrency slots and daily quotas."""

from __future__ import annotations

from donjon.ratelimit.interface import (
    BucketKey,
    ConcurrencyLimiter,
    Decision,
    LimiterUnavailable,
    QuotaCounter,
    QuotaDecision,
    QuotaLimit,
    RateLimiter,
    RateLimitError,
    Slot,
)
from donjon.ratelimit.memory import MemoryRateLimiter
from donjon.ratelimit.memory_slots import MemoryConcurrencyLimiter

__all__ = [
    "BucketKey",
    "ConcurrencyLimiter",
    "Decision",
    "LimiterUnavailable",
    "MemoryConcurrencyLimiter",
    "MemoryRateLimiter",
    "QuotaCounter",
    "QuotaDecision",
    "QuotaLimit",
    "RateLimitError",
    "RateLimiter",
    "Slot",
]
