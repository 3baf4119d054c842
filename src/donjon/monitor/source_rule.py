"""`event_sources` (`trigger.source.unavailable`, `trigger.event.malformed`,
`trigger.event.dropped`): a storage or database event source that cannot reach what it
reads from, that is fed events it cannot read, or whose events the node refused and
that cannot be asked again (a PostgreSQL NOTIFY the function's full queue refused).

A source writes one `trigger.source.unavailable` audit record when its queue or
database stops answering (or refuses its credentials), once per outage, and
`trigger.source.available` when it answers again (triggers/source_health.py);
an SQS source writes `trigger.event.malformed` for a message that is not an S3
notification (once per message on a node). While a source is down its events
wait in the queue (SQS) or are lost (PostgreSQL NOTIFY keeps nothing for an
absent listener); a malformed message waits for the queue's redrive policy. A NOTIFY source writes
`trigger.event.dropped` for the first notification lost in a run of refusals (its
function's queue full, say; triggers/postgres_source.py) and one more, with the count,
when the run ends.
"""

from __future__ import annotations

from donjon.audit.log import CommittedRecord
from donjon.monitor.findings import Finding, Severity, Subject

__all__ = ["DROPPED", "MALFORMED", "UNAVAILABLE", "EventSources"]

UNAVAILABLE = "trigger.source.unavailable"
MALFORMED = "trigger.event.malformed"
DROPPED = "trigger.event.dropped"

_SEVERITY: dict[str, Severity] = {UNAVAILABLE: "high", MALFORMED: "medium", DROPPED: "high"}


class EventSources:
    """A function's event source is down, or reads events it cannot parse."""

    name = "event_sources"
    #: The only records it reads (the monitor feeds it no other: engine.py).
    actions = frozenset(_SEVERITY)

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        event = record.event
        severity = _SEVERITY.get(event.action)
        if severity is None:
            return []
        d = event.detail
        source = str(d.get("source", "its event source"))[:300]
        reason = str(d.get("reason", ""))[:300]
        if event.action == UNAVAILABLE:
            summary = f"{d.get('trigger', 'event')} trigger: {source} is unavailable: {reason}"
        elif event.action == DROPPED:
            summary = (
                f"{d.get('trigger', 'event')} trigger: {d.get('dropped', 1)} event(s) from"
                f" {source} refused and lost: {reason}"
            )
        else:
            summary = f"{d.get('trigger', 'event')} trigger: a malformed event from {source}"
        return [
            Finding(
                event.action,
                self.name,
                severity,
                Subject("function", event.target),
                summary[:500],
                (record.seq,),
                now,
                {"trigger": str(d.get("trigger", "")), "source": source, "reason": reason},
            )
        ]

    def tick(self, now: float) -> list[Finding]:
        return []
