"""The rate limiter's role, shared by its backends (memory now, Redis for several nodes)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from donjon.errors import Error

__all__ = ["Decision", "RateLimitError", "RateLimiter"]


class RateLimitError(Error):
    """A call was refused because a rate limit is spent."""

    status = 429
    title = "Too many requests"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, hint=f"retry in {retry_after_s:.1f}s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    #: When refused: seconds until one more call would be allowed.
    retry_after_s: float = 0.0


class RateLimiter(ABC):
    """Token buckets keyed by a string: `count` calls per `period_s`, bursting to `count`."""

    @abstractmethod
    def take(self, key: str, count: int, period_s: float) -> Decision:
        """Spend one token of bucket `key`, or say when one will be there."""
