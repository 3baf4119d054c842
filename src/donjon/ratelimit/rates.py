"""Rates as people write them (`50/second`), and the limits a caller carries.

`parse_rate("50/second")` is `(50, 1.0)`. `CallerLimits` is what a key or a role
document sets for its callers (each field None: not set there, the next in line
decides: the key's, else its role's, else the server's default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from donjon.errors import Error

__all__ = [
    "MAX_BURST",
    "MAX_CONCURRENCY",
    "NO_LIMITS",
    "PERIODS",
    "BadRate",
    "CallerLimits",
    "parse_rate",
]

#: The units a rate may name, in seconds.
PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE_RE = re.compile(r"^([1-9][0-9]{0,8})/(second|minute|hour|day)$")
#: The largest burst or concurrency a key or role may set.
MAX_BURST = 1_000_000_000
MAX_CONCURRENCY = 100_000


class BadRate(Error):
    """A rate, burst or concurrency that does not parse or is out of range."""

    title = "Bad request"


def parse_rate(text: str) -> tuple[int, float]:
    """`"50/second"` -> (50, 1.0); `BadRate` for anything else."""
    m = _RATE_RE.fullmatch(text)
    if m is None:
        raise BadRate(
            f"a rate reads like '50/second' (second|minute|hour|day), got {text[:64]!r}",
            hint="a whole number from 1, a slash, and one of second, minute, hour, day",
        )
    return int(m.group(1)), PERIODS[m.group(2)]


@dataclass(frozen=True, slots=True)
class CallerLimits:
    """A key's or a role's own limits on its callers; None: not set here."""

    #: Token bucket: `rate` (e.g. "50/second") refills, `burst` tokens at most.
    rate: str | None = None
    burst: int | None = None
    #: Calls in flight at once.
    concurrency: int | None = None

    def __post_init__(self) -> None:
        if self.rate is not None:
            parse_rate(self.rate)
        if self.burst is not None and not 1 <= self.burst <= MAX_BURST:
            raise BadRate(f"burst must be from 1 to {MAX_BURST}, got {self.burst}")
        if self.concurrency is not None and not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise BadRate(
                f"concurrency must be from 1 to {MAX_CONCURRENCY}, got {self.concurrency}"
            )

    def __bool__(self) -> bool:
        return self.rate is not None or self.burst is not None or self.concurrency is not None

    def as_dict(self) -> dict[str, object]:
        """The fields set, as the API shows them."""
        out: dict[str, object] = {}
        if self.rate is not None:
            out["rate"] = self.rate
        if self.burst is not None:
            out["burst"] = self.burst
        if self.concurrency is not None:
            out["concurrency"] = self.concurrency
        return out


NO_LIMITS = CallerLimits()
