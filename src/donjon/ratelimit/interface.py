"""The limiter's roles, shared by its backends (memory for one node, Redis for several).

Three roles, each async (the Redis backend does I/O; callers must not change
when it is in force):

- `RateLimiter`: token buckets (rate and burst) named by a `BucketKey`;
- `ConcurrencyLimiter`: slots held for the length of a call, capped per key,
  waited for a bounded time, leased so that a node that dies holding one
  cannot keep it;
- `QuotaCounter`: daily usage (invocations, compute) per subject, taken
  all-or-nothing against the quotas in force.

A backend may play all three (the Redis one does). `LimiterUnavailable` is
what a shared backend raises when it cannot be reached; callers answer 503.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from donjon.errors import Error

__all__ = [
    "BucketKey",
    "ConcurrencyLimiter",
    "Decision",
    "LimiterUnavailable",
    "QuotaCounter",
    "QuotaDecision",
    "QuotaLimit",
    "RateLimitError",
    "RateLimiter",
    "Slot",
]


class RateLimitError(Error):
    """A call was refused because a rate limit is spent."""

    title = "Too many requests"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        # Whole seconds, at least one: what Retry-After says (a sub-second wait read "0.0s").
        super().__init__(message, hint=f"retry in {max(1, math.ceil(retry_after_s))}s")
        self.retry_after_s = retry_after_s


class LimiterUnavailable(Error):
    """The shared store of limits (Redis) cannot be reached or answered wrongly."""

    title = "Limits unavailable"


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
    #: The four fields as a tuple, made once: what the memory limiters key their tables by
    #: (equal exactly when the keys are; a tuple's hash is C's, where a frozen dataclass's
    #: `__hash__` is a Python call per lookup, several per call).
    parts: tuple[str | None, str | None, str | None, str] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.principal is None and self.function is None and self.client is None:
            raise ValueError("a bucket key names at least one of principal, function, client")
        object.__setattr__(self, "parts", (self.principal, self.function, self.client, self.scope))

    def __str__(self) -> str:
        """A stable, unambiguous text form (what a shared backend names the bucket by)."""
        parts: list[str | None] = [self.principal, self.function, self.client]
        if self.scope:
            parts.append(self.scope)
        return json.dumps(parts, separators=(",", ":"))


class Decision(NamedTuple):
    """One bucket's answer. Immutable; a named tuple rather than a frozen dataclass, whose
    construction (a `setattr` per field) cost more than the take that makes it (three
    per keyed call)."""

    allowed: bool
    #: When refused: seconds until one more call would be allowed.
    retry_after_s: float = 0.0
    #: Whole tokens left in the bucket after this decision (RateLimit's `r`).
    remaining: int = 0
    #: Seconds until the bucket is full again (RateLimit's `t`).
    reset_s: float = 0.0


class RateLimiter(ABC):
    """Token buckets: refilled at `count` per `period_s`, holding at most `burst`
    tokens (`burst` None: `count`). A bucket starts full."""

    @abstractmethod
    async def take(
        self, key: BucketKey, count: int, period_s: float, burst: int | None = None
    ) -> Decision:
        """Spend one token of bucket `key`, or say when one will be there."""

    @abstractmethod
    async def give_back(
        self, key: BucketKey, count: int, period_s: float, burst: int | None = None
    ) -> None:
        """Return one token that `take` spent on a call refused after it (a full queue):
        a refused call costs nothing. Never past the bucket's `burst`."""

    async def close(self) -> None:
        """Release what the backend holds (connections); the default holds nothing."""
        return


@dataclass(frozen=True, slots=True)
class Slot:
    """One held slot of a concurrency key; give it back with `release`."""

    key: BucketKey
    token: str


class ConcurrencyLimiter(ABC):
    """Slots per key: at most `cap` held at once over every node sharing the backend."""

    @abstractmethod
    async def acquire(
        self, key: BucketKey, cap: int, *, wait_s: float, lease_s: float
    ) -> Slot | None:
        """Hold one of `key`'s `cap` slots, waiting at most `wait_s` for one to free;
        None if none did. A slot not released within `lease_s` is freed by the backend
        (its holder died): callers pass a lease past the call's own deadline."""

    @abstractmethod
    async def release(self, slot: Slot) -> None:
        """Give `slot` back (idempotent: releasing a freed slot does nothing)."""

    @abstractmethod
    async def held(self, key: BucketKey) -> int:
        """How many of `key`'s slots are held now."""


@dataclass(frozen=True, slots=True)
class QuotaLimit:
    """One subject's daily quota: a subject is `key:<id>`, `role:<name>` or
    `function:<name>`; None leaves that measure unlimited."""

    subject: str
    max_invocations: int | None = None
    max_compute_ms: int | None = None


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    allowed: bool
    #: When refused: the subject whose quota is spent, and which measure
    #: ("invocations" or "compute-seconds").
    subject: str = ""
    measure: str = ""
    #: When refused: the usage and the limit of that measure (compute in ms).
    used: int = 0
    limit: int = 0


class QuotaCounter(ABC):
    """Daily usage per subject; `day` is the UTC date, `YYYY-MM-DD`."""

    @abstractmethod
    async def take(self, limits: Sequence[QuotaLimit], day: str) -> QuotaDecision:
        """All or nothing: if no subject of `limits` has used up a measure (invocations
        at or past `max_invocations`, compute at or past `max_compute_ms`), count one
        invocation for every subject and allow; else count nothing and refuse."""

    @abstractmethod
    async def give_back(self, subjects: Sequence[str], day: str) -> None:
        """Uncount one invocation that `take` counted for each of `subjects` on `day`, for
        a call refused after it (a full queue): never below zero."""

    @abstractmethod
    async def add_compute(self, subjects: Sequence[str], day: str, compute_ms: int) -> None:
        """Add a finished call's compute time to each subject's usage of `day`."""

    @abstractmethod
    async def usage(self, subjects: Sequence[str], day: str) -> dict[str, tuple[int, int]]:
        """Each subject's (invocations, compute ms) of `day`; (0, 0) when none."""
