"""Egress decisions on their way to the audit log, aggregated per call.

Every connection the proxy allows or refuses is an `egress.connect` record
(actor `function:NAME`, target `NAME@VERSION` like a call's own record,
outcome `allowed`, `denied` or `failed`, detail: function, version,
request_id, destination, address, decision, reason, grant, count). A loop of
refused attempts must not grow the log by a record each: per (call,
destination, decision, reason) the first is written at once (`count: 1`), the
rest are counted in memory and written as one record (`aggregated: true`,
`count: n`) when the call ends, or when the window closes for a long call. The
sum of `count` over a call's records is exactly its number of connections.

Memory is bounded: a call tracks at most `MAX_KEYS` destinations; further
ones count under destination `(other)`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from donjon.audit.log import AuditEvent, AuditLog

__all__ = ["MAX_KEYS", "OTHER", "Decision", "EgressRecords"]

MAX_KEYS = 64
OTHER = "(other)"

log = logging.getLogger("donjon.egress")


@dataclass(frozen=True, slots=True)
class Decision:
    """What the proxy decided for one connection of one call."""

    function: str
    version: int
    request_id: str
    destination: str
    decision: str  # allowed | denied | failed
    reason: str
    address: str = ""
    grant: str = ""

    def event(self, count: int, *, aggregated: bool = False) -> AuditEvent:
        detail: dict[str, object] = {
            "function": self.function,
            "version": self.version,
            "request_id": self.request_id,
            "destination": self.destination,
            "decision": self.decision,
            "reason": self.reason,
            "count": count,
        }
        if self.address:
            detail["address"] = self.address
        if self.grant:
            detail["grant"] = self.grant
        if aggregated:
            detail["aggregated"] = True
        return AuditEvent(
            f"function:{self.function}",
            "egress.connect",
            f"{self.function}@{self.version}",
            self.decision,
            detail,
        )


@dataclass(slots=True)
class _Count:
    first: Decision
    opened: float
    counted: int = 0
    last: Decision | None = None


_Key = tuple[str, str, str, str]  # call, destination, decision, reason


class EgressRecords:
    """Counts decisions per call; writes the first of each kind at once. Event loop only."""

    def __init__(
        self, audit: AuditLog, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._audit = audit
        self._window_s = window_s
        self._clock = clock
        self._counts: dict[_Key, _Count] = {}
        self._keys_per_call: dict[str, int] = {}
        #: Connections by decision (allowed, denied, failed), read by the node's metrics.
        self.decisions: dict[str, int] = {}

    async def note(self, call: str, decision: Decision) -> bool:
        """Audit `decision` for `call`; True when it was written at once (first of its kind)."""
        self.decisions[decision.decision] = self.decisions.get(decision.decision, 0) + 1
        key: _Key = (call, decision.destination, decision.decision, decision.reason)
        if key not in self._counts and self._keys_per_call.get(call, 0) >= MAX_KEYS:
            key = (call, OTHER, decision.decision, decision.reason)
        count = self._counts.get(key)
        if count is None:
            self._counts[key] = _Count(decision, self._clock())
            self._keys_per_call[call] = self._keys_per_call.get(call, 0) + 1
            # The first of its kind per call: a line (with the call's request id) and a record.
            log.log(
                logging.DEBUG if decision.decision == "allowed" else logging.INFO,
                "egress %s: %s (%s)",
                decision.decision,
                decision.destination or "?",
                decision.reason,
            )
            await self._audit.record(decision.event(1))
            return True
        count.counted += 1
        count.last = decision
        return False

    async def end_call(self, call: str) -> None:
        """Write the call's counted decisions and forget the call."""
        keys = [k for k in self._counts if k[0] == call]
        self._keys_per_call.pop(call, None)
        await self._write([(k, self._counts.pop(k)) for k in keys])

    async def flush(self, *, everything: bool = False) -> None:
        """Write the counts of windows that have closed (of long calls), and restart them."""
        now = self._clock()
        due = [
            k
            for k, c in self._counts.items()
            if c.counted and (everything or now - c.opened >= self._window_s)
        ]
        items = []
        for key in due:
            count = self._counts[key]
            items.append((key, _Count(count.first, count.opened, count.counted, count.last)))
            count.counted, count.opened = 0, now
        await self._write(items)

    async def _write(self, items: list[tuple[_Key, _Count]]) -> None:
        for key, count in items:
            if not count.counted:
                continue
            last = count.last or count.first
            if key[1] == OTHER:
                last = Decision(
                    last.function, last.version, last.request_id, OTHER, last.decision, last.reason
                )
            try:
                await self._audit.record(last.event(count.counted, aggregated=True))
            except Exception:  # the audit log failing is logged there; never lose the proxy
                log.exception("writing an egress aggregate failed")
