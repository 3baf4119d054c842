"""How an event source lives through outages: a capped exponential backoff between
attempts, and one audit record (and log line) when it stops reaching what it reads
from and one when it reaches it again.

The first is `trigger.source.unavailable`, which the monitor raises as an alert
(monitor/source_rule.py); the second, `trigger.source.available`, says how long
the outage lasted. Never one record per failed attempt: a queue down for a day
is one outage, not 10,000 records.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable

from donjon.audit import AuditEvent

__all__ = ["AVAILABLE", "UNAVAILABLE", "Backoff", "SourceHealth"]

log = logging.getLogger("donjon.sources")

#: The audit actions of an outage's start and end.
UNAVAILABLE = "trigger.source.unavailable"
AVAILABLE = "trigger.source.available"
#: The longest a reason is kept in a record.
MAX_REASON = 300

Record = Callable[[AuditEvent], Awaitable[object]]


class Backoff:
    """Delays of `first` * 2**n seconds, capped at `cap`, each with jitter (between
    half and all of it) so that sources down together do not retry together."""

    def __init__(self, first: float = 0.5, cap: float = 60.0) -> None:
        self.first = first
        self.cap = cap
        self._n = 0
        self._random = random.SystemRandom()

    def next(self) -> float:
        """The delay before the next attempt."""
        delay = min(self.cap, self.first * 2.0 ** min(self._n, 32))
        self._n += 1
        return delay * (0.5 + self._random.random() / 2)

    def reset(self) -> None:
        """After a success: the next failure waits `first` again."""
        self._n = 0


class SourceHealth:
    """The state of one source (a function's trigger): reports each change once."""

    def __init__(self, record: Record, function: str, trigger: str, source: str) -> None:
        self._record = record
        self.function = function
        self.trigger = trigger
        #: What it reads from, without credentials: `sqs <queue url>`, `postgres channel orders`.
        self.source = source
        self._down_since: float | None = None
        self.failures = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    async def failed(self, reason: str) -> None:
        """An attempt failed: the first failure of an outage is logged and audited."""
        self.failures += 1
        if self._down_since is not None:
            log.debug("%s: %s still unavailable: %s", self.function, self.source, reason)
            return
        self._down_since = time.monotonic()
        log.warning(
            "%s trigger of %s: %s is unavailable (retrying with backoff): %s",
            self.trigger,
            self.function,
            self.source,
            reason,
        )
        await self._report(UNAVAILABLE, "error", {"reason": reason[:MAX_REASON]})

    async def succeeded(self) -> None:
        """An attempt worked: the end of an outage, if there was one, is logged and audited."""
        if self._down_since is None:
            return
        down_s = round(time.monotonic() - self._down_since, 3)
        self._down_since = None
        log.info(
            "%s trigger of %s: %s is reachable again", self.trigger, self.function, self.source
        )
        await self._report(AVAILABLE, "ok", {"down_s": down_s, "attempts": self.failures})
        self.failures = 0

    async def _report(self, action: str, outcome: str, extra: dict[str, object]) -> None:
        detail = {"trigger": self.trigger, "source": self.source, **extra}
        try:
            await self._record(AuditEvent("system", action, self.function, outcome, detail))
        except Exception:  # the audit writer stopping with the node: the log line stays
            log.exception("%s: the record of %s could not be written", self.function, action)
