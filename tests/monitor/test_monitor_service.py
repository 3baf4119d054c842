"""The node's monitor as `start_monitor` builds it: modes checked, records a dead node
never examined replayed at the next start, and no alert raised twice for them."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from donjon.audit.log import AuditEvent, AuditLog
from donjon.config import MonitorSettings
from donjon.monitor.alerts import AlertStore
from donjon.monitor.rules import ScanSkipped
from donjon.monitor.service import MonitorError, start_monitor
from monitor_support import make_engine, make_log

_UNSAFE_DEPLOY = AuditEvent("key:a", "function.deploy", "f@1", "ok", {"unsafe_skip_scan": True})


async def _run_once(log: AuditLog, store: AlertStore, *events: AuditEvent) -> None:
    """One node run: start the monitor, append `events`, stop cleanly."""
    service = await start_monitor(MonitorSettings(), log, store, detectors=[ScanSkipped()])
    for event in events:
        await log.record(event)
    await service.monitor.settle()
    await service.close()


def _alerts(log: AuditLog) -> list[dict[str, Any]]:
    return [r for r in log.tail(1000) if r["action"] == "alert.raised"]


def test_records_a_dead_node_never_examined_are_examined_at_start(tmp_path: Path) -> None:
    """A deploy committed while no monitor listened (a crash) is alerted at the next start,
    once; a later start raises nothing more."""
    engine = make_engine(tmp_path)
    log, store = make_log(engine), AlertStore(engine)

    async def go() -> None:
        log.start()
        await _run_once(log, store)  # the monitor's first run: the watermark starts
        await log.record(_UNSAFE_DEPLOY)  # committed, never examined (the node died)
        await _run_once(log, store)
        await _run_once(log, store)
        log.stop()

    asyncio.run(go())
    (alert,) = _alerts(log)
    assert alert["detail"]["kind"] == "deploy.scan_skipped"
    assert [a["seq"] for a in store.listing().alerts] == [alert["seq"]]


def test_replay_after_a_crash_does_not_raise_the_same_alert_again(tmp_path: Path) -> None:
    """A node that alerted and died before saving its watermark replays the record at
    start; the alert already raised (in the index) keeps a second one from being raised."""
    engine = make_engine(tmp_path)
    log, store = make_log(engine), AlertStore(engine)

    async def go() -> None:
        log.start()
        await _run_once(log, store)
        before = store.through()
        await _run_once(log, store, _UNSAFE_DEPLOY)
        db = engine.url.database
        assert db is not None and before is not None
        with sqlite3.connect(db) as conn:  # as if it died before saving the watermark
            conn.execute("UPDATE alerts_indexed SET through = ?", (before,))
        await _run_once(log, store)
        log.stop()

    asyncio.run(go())
    assert len(_alerts(log)) == 1


def test_unknown_detector_in_modes_is_refused(tmp_path: Path) -> None:
    """DONJON_MONITOR_MODES naming no detector stops the start with the detectors' names."""
    engine = make_engine(tmp_path)
    settings = MonitorSettings(modes={"auth_failure": "block"})  # a typo

    async def go() -> None:
        await start_monitor(settings, make_log(engine), AlertStore(engine))

    with pytest.raises(MonitorError, match="auth_failure") as caught:
        asyncio.run(go())
    assert "auth_failures" in caught.value.hint
