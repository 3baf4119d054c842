"""The limits_unavailable rule: an outage of the shared limits store becomes one alert."""

from __future__ import annotations

from donjon.audit.log import AuditEvent, CommittedRecord
from donjon.config import MonitorSettings
from donjon.monitor.limits_rule import LimitsUnavailable
from donjon.monitor.service import rule_detectors


def _record(seq: int, action: str) -> CommittedRecord:
    event = AuditEvent(
        "system", action, "limits", "error", {"store": "Redis at redis://h:6379/0", "reason": "x"}
    )
    return CommittedRecord(seq, 1000.0, event)


def test_an_outage_record_is_a_high_finding_about_the_nodes_limits() -> None:
    """limits.unavailable raises limits.unavailable on node:limits, resting on its record."""
    (finding,) = LimitsUnavailable().observe(_record(7, "limits.unavailable"), 1000.0)
    assert (finding.kind, str(finding.subject), finding.severity) == (
        "limits.unavailable",
        "node:limits",
        "high",
    )
    assert finding.evidence == (7,)
    assert "Redis at redis://h:6379/0" in finding.summary


def test_the_end_of_an_outage_raises_nothing() -> None:
    """limits.available (Redis answers again) is recorded, not alerted."""
    assert LimitsUnavailable().observe(_record(8, "limits.available"), 1000.0) == []


def test_the_node_runs_the_rule() -> None:
    """It is among the rules every node runs (DONJON_MONITOR_MODES may name it)."""
    assert "limits_unavailable" in {d.name for d in rule_detectors(MonitorSettings())}
