"""`limits_unavailable` (`limits.unavailable`): the shared limits store (Redis) is down.

The node writes one `limits.unavailable` audit record when it notices an outage
of DONJON_REDIS_URL's Redis (ratelimit/failover.py: once per outage, never per
request), and `limits.available` when Redis answers again. This rule raises
the first as an alert about the node's limits: while it lasts, quotas refuse
every call (503) and each node enforces rates and concurrency alone.
"""

from __future__ import annotations

from donjon.audit.log import CommittedRecord
from donjon.monitor.findings import Finding, Subject

__all__ = ["UNAVAILABLE", "LimitsUnavailable"]

#: The record the node writes at the start of an outage (and `limits.available` at its end).
UNAVAILABLE = "limits.unavailable"


class LimitsUnavailable:
    """The store shared limits live in stopped answering."""

    name = "limits_unavailable"
    #: The only records it reads (the monitor feeds it no other: engine.py).
    actions = frozenset({UNAVAILABLE})

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        event = record.event
        if event.action != UNAVAILABLE:
            return []
        d = event.detail
        store = str(d.get("store", "the shared limits store"))
        return [
            Finding(
                UNAVAILABLE,
                self.name,
                "high",
                Subject("node", "limits"),
                f"{store} is unavailable: quotas refuse calls, each node limits rates alone",
                (record.seq,),
                now,
                {"store": store, "reason": str(d.get("reason", ""))[:300]},
            )
        ]

    def tick(self, now: float) -> list[Finding]:
        return []
