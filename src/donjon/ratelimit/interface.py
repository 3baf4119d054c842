"""The rate limiter's role, shared by its backends (memory now, Redis for several nodes).

The interface is async from its first implementation on: the Redis backend
does I/O, and callers must not change when it arrives. A bucket is named by
a `BucketKey`: whichever of principal, function and client address the
caller wants the limit to count by.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass

from donjon.errors import Error

__all__ = ["BucketKey", "Decision", "RateLimitError", "RateLimiter"]


class RateLimitError(Error):
    """A call was refused because a rate limit is spent."""

    title = "Too many requests"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, hint=f"retry in {retry_after_s:.1f}s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class BucketKey:
    """Whose bucket: the parts left as None are not part of the key.

    `BucketKey(function="f")` counts every caller of f together;
    `BucketKey(principal="k1", function="f")` counts k1's calls of f only;
    `BucketKey(client="203.0.113.9")` counts one address (public triggers).
    """

    principal: str | None = None
    function: str | None = None
    client: str | None = None
    #: What the bucket is for, when not the manifest's limits: "throttle" is a
    #: temporary, tighter bucket the monitor put on a caller (monitor/throttles.py).
    scope: str = ""

    def __post_init__(self) -> None:
        if self.principal is None and self.function is None and self.client is None:
            raise ValueError("a bucket key names at least one of principal, function, client")

    def __str__(self) -> str:
        """A stable, unambiguous text form (what a shared backend names the bucket by)."""
        parts: list[str | None] = [self.principal, self.function, self.client]
        if self.scope:
            parts.append(self.scope)
        return json.dumps(parts, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    #: When refused: seconds until one more call would be allowed.
    retry_after_s: float = 0.0


class RateLimiter(ABC):
    """Token buckets: `count` calls per `period_s`, bursting to `count`."""

    @abstractmethod
    async def take(self, key: BucketKey, count: int, period_s: float) -> Decision:
        """Spend one token of bucket `key`, or say when one will be there."""
