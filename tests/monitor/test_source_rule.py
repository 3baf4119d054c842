"""The event_sources rule: an event source's outage, or a malformed event, becomes an alert."""

from __future__ import annotations

from donjon.audit.log import AuditEvent, CommittedRecord
from donjon.config import MonitorSettings
from donjon.monitor.service import rule_detectors
from donjon.monitor.source_rule import EventSources


def _record(seq: int, action: str, outcome: str = "error") -> CommittedRecord:
    detail = {"trigger": "postgres", "source": "postgres channel orders", "reason": "refused"}
    return CommittedRecord(seq, 1000.0, AuditEvent("system", action, "orders-fn", outcome, detail))


def test_an_outage_is_a_high_finding_about_the_function() -> None:
    """trigger.source.unavailable raises a high finding on function:NAME naming the source."""
    (finding,) = EventSources().observe(_record(7, "trigger.source.unavailable"), 1000.0)
    assert (finding.kind, str(finding.subject), finding.severity) == (
        "trigger.source.unavailable",
        "function:orders-fn",
        "high",
    )
    assert finding.evidence == (7,)
    assert "postgres channel orders is unavailable: refused" in finding.summary


def test_a_malformed_event_is_a_medium_finding() -> None:
    """trigger.event.malformed raises a medium finding on the function."""
    (finding,) = EventSources().observe(_record(9, "trigger.event.malformed", "refused"), 1.0)
    assert (finding.kind, finding.severity) == ("trigger.event.malformed", "medium")


def test_a_dropped_notification_is_a_high_finding_naming_the_reason() -> None:
    """trigger.event.dropped (a NOTIFY the node refused, lost) raises a high finding on the
    function saying how many and why."""
    (finding,) = EventSources().observe(_record(11, "trigger.event.dropped", "refused"), 1.0)
    assert (finding.kind, str(finding.subject), finding.severity) == (
        "trigger.event.dropped",
        "function:orders-fn",
        "high",
    )
    assert "refused and lost: refused" in finding.summary


def test_the_end_of_an_outage_raises_nothing() -> None:
    """trigger.source.available (the source answers again) is recorded, not alerted."""
    assert EventSources().observe(_record(8, "trigger.source.available", "ok"), 1000.0) == []


def test_the_node_runs_the_rule() -> None:
    """It is among the rules every node runs (DONJON_MONITOR_MODES may name it)."""
    assert "event_sources" in {d.name for d in rule_detectors(MonitorSettings())}
