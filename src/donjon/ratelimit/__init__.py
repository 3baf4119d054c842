"""Rate limits against DoS and runaway bills: token buckets per function."""

from __future__ import annotations

from donjon.ratelimit.interface import Decision, RateLimiter, RateLimitError
from donjon.ratelimit.memory import MemoryRateLimiter

__all__ = ["Decision", "MemoryRateLimiter", "RateLimitError", "RateLimiter"]
