"""The advisory_watch rule: a version that became vulnerable is an alert per advisory."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from donjon.audit.log import AuditEvent, AuditLog, CommittedRecord
from donjon.config import MonitorSettings
from donjon.monitor.advisory_rule import VulnerableDependency
from donjon.monitor.alerts import AlertStore
from donjon.monitor.responses import DEFAULT_RESPONSES, parse_responses
from donjon.monitor.service import rule_detectors, start_monitor
from monitor_support import make_engine, make_log


def _event(advisory: str = "GHSA-1", version: int = 2) -> AuditEvent:
    detail = {
        "function": "resize",
        "version": version,
        "package": "leftpad",
        "installed": "1.0",
        "advisory": advisory,
        "aliases": ["CVE-1"],
        "fixed": ["1.1", "2.0.1"],
        "severity": "critical",
        "summary": "leftpad pads too far",
    }
    return AuditEvent(
        "system:advisory-watch", "advisory.vulnerable", f"resize@{version}", "warning", detail
    )


def test_a_vulnerable_version_is_a_finding_about_its_function() -> None:
    """advisory.vulnerable gives dependency.vulnerable on function:NAME naming it all."""
    (finding,) = VulnerableDependency().observe(CommittedRecord(5, 1.0, _event()), 2.0)
    assert (finding.kind, str(finding.subject), finding.severity) == (
        "dependency.vulnerable",
        "function:resize",
        "critical",
    )
    assert finding.evidence == (5,)
    assert finding.summary == (
        "resize@2: leftpad 1.0 is affected by GHSA-1 (CVE-1); fixed in 1.1, 2.0.1"
    )
    assert finding.key == "2/leftpad/GHSA-1"


def test_other_records_raise_nothing() -> None:
    """A cleared finding or a quiet baseline is recorded, not alerted."""
    for action in ("advisory.cleared", "advisory.known", "advisory.data"):
        event = AuditEvent("system:advisory-watch", action, "resize@2", "ok", {})
        assert VulnerableDependency().observe(CommittedRecord(1, 1.0, event), 1.0) == []


def test_the_node_runs_the_rule_and_responds_with_nothing_by_default() -> None:
    """It is among the node's rules; in block mode it does nothing unless configured, and
    quarantine may be configured for it."""
    assert "advisory_watch" in {d.name for d in rule_detectors(MonitorSettings())}
    assert DEFAULT_RESPONSES["dependency.vulnerable"] == "none"
    assert parse_responses("dependency.vulnerable=quarantine") == {
        "dependency.vulnerable": "quarantine"
    }


async def _run_once(log: AuditLog, store: AlertStore, *events: AuditEvent) -> None:
    service = await start_monitor(MonitorSettings(), log, store, detectors=[VulnerableDependency()])
    for event in events:
        await log.record(event)
    await service.monitor.settle()
    await service.close()


def _alerts(log: AuditLog) -> list[dict[str, Any]]:
    return [r for r in log.tail(1000) if r["action"] == "alert.raised"]


def test_a_replay_after_a_crash_does_not_raise_a_keyed_alert_again(tmp_path: Path) -> None:
    """A node that alerted and died before saving its watermark replays the record; the
    indexed alert, with its key, keeps the same finding from being raised twice."""
    engine = make_engine(tmp_path)
    log, store = make_log(engine), AlertStore(engine)

    async def go() -> None:
        log.start()
        await _run_once(log, store)
        before = store.through()
        await _run_once(log, store, _event("GHSA-1"), _event("GHSA-2"))
        db = engine.url.database
        assert db is not None and before is not None
        with sqlite3.connect(db) as conn:  # as if it died before saving the watermark
            conn.execute("UPDATE alerts_indexed SET through = ?", (before,))
        await _run_once(log, store)
        log.stop()

    asyncio.run(go())
    alerts = _alerts(log)
    assert sorted(a["detail"]["key"] for a in alerts) == ["2/leftpad/GHSA-1", "2/leftpad/GHSA-2"]
    assert [a["key"] for a in store.listing().alerts] == ["2/leftpad/GHSA-1", "2/leftpad/GHSA-2"]
