"""A node that raised an alert in `block` mode and died before its response: the next
start answers it, once (monitor/unanswered.py), with a real audit log, quarantine store
and responder."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from donjon.audit.log import AuditEvent, AuditLog
from donjon.config import MonitorSettings
from donjon.monitor.alerts import AlertStore
from donjon.monitor.engine import Responder as ResponderProtocol
from donjon.monitor.quarantine import Quarantines
from donjon.monitor.responses import Responder, ResponsePolicy
from donjon.monitor.rules import ScanSkipped
from donjon.monitor.service import start_monitor
from donjon.monitor.throttles import Throttles
from donjon.ratelimit import MemoryRateLimiter
from donjon.store import QuarantineStore
from monitor_support import make_engine, make_log

_UNSAFE_DEPLOY = AuditEvent("key:a", "function.deploy", "f@1", "ok", {"unsafe_skip_scan": True})
_BLOCK = MonitorSettings(modes={"scan_skipped": "block"})


def _responder(engine: Engine, log: AuditLog) -> Responder:
    async def no_keys(_key_id: str) -> bool:
        return False

    throttles = Throttles(MemoryRateLimiter())
    return Responder(
        log, ResponsePolicy(), throttles, Quarantines(QuarantineStore(engine), log), no_keys
    )


async def _run_once(
    log: AuditLog,
    store: AlertStore,
    responder: ResponderProtocol | None,
    settings: MonitorSettings = _BLOCK,
    *events: AuditEvent,
) -> None:
    service = await start_monitor(
        settings, log, store, detectors=[ScanSkipped()], responder=responder
    )
    for event in events:
        await log.record(event)
    await service.monitor.settle()
    await service.close()


def _died_before_answering(engine: Engine, log: AuditLog, store: AlertStore) -> None:
    """As a node leaves it when it dies between an alert's record and its response: the
    alert committed (a run with no responder), the watermark before the record it rests on."""

    async def go() -> None:
        await _run_once(log, store, None)  # the monitor's first run: the watermark starts
        before = store.through()
        await _run_once(log, store, None, _BLOCK, _UNSAFE_DEPLOY)
        db = engine.url.database
        assert db is not None and before is not None
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE alerts_indexed SET through = ?", (before,))

    asyncio.run(go())


def _actions(log: AuditLog, prefix: str) -> list[dict[str, Any]]:
    return [r for r in log.tail(1000) if str(r["action"]).startswith(prefix)]


def test_an_alert_never_answered_is_answered_at_the_next_start_once(tmp_path: Path) -> None:
    """The quarantine a `deploy.scan_skipped` alert called for is made at the next start,
    naming that alert; the finding replayed raises no second alert, and a later start
    answers nothing again."""
    engine = make_engine(tmp_path)
    log, store = make_log(engine), AlertStore(engine)
    log.start()
    try:
        _died_before_answering(engine, log, store)
        (alert,) = _actions(log, "alert.raised")
        assert _actions(log, "response.") == []
        responder = _responder(engine, log)
        asyncio.run(_run_once(log, store, responder))
        asyncio.run(_run_once(log, store, responder))
        (response,) = _actions(log, "response.")
        assert (response["action"], response["target"]) == ("response.quarantine", "function:f")
        assert response["detail"]["alert_seq"] == alert["seq"]
        assert len(_actions(log, "alert.raised")) == 1
        assert [q.name for q in QuarantineStore(engine).all()] == ["f"]
    finally:
        log.stop()


def test_an_alert_no_longer_in_block_mode_is_not_answered(tmp_path: Path) -> None:
    """The admin moved the detector to `alert` mode since: the old alert gets no response."""
    engine = make_engine(tmp_path)
    log, store = make_log(engine), AlertStore(engine)
    log.start()
    try:
        _died_before_answering(engine, log, store)
        alert_mode = MonitorSettings(modes={"scan_skipped": "alert"})
        asyncio.run(_run_once(log, store, _responder(engine, log), alert_mode))
        assert _actions(log, "response.") == []
        assert QuarantineStore(engine).all() == []
    finally:
        log.stop()
