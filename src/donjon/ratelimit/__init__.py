"""Rate limits against DoS and runaway bills: token buckets per function."""

from __future__ import annotations

from donjon.ratelimit.interface import BucketKey, Decision, RateLimiter, RateLimitError
from donjon.ratelimit.memory import MemoryRateLimiter

__all__ = ["BucketKey", "Decision", "MemoryRateLimiter", "RateLimitError", "RateLimiter"]
