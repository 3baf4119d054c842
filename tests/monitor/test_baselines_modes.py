"""The learned detectors under the monitor, on a real audit log: learn, alert and block."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from donjon.audit.log import AuditEvent
from donjon.config import MonitorSettings
from donjon.monitor.engine import Monitor
from donjon.monitor.findings import Finding, Mode, Subject
from donjon.monitor.firstseen import FirstSeenDetector
from donjon.monitor.learned import LEARNED, learned_detectors
from donjon.monitor.rates import RateDetector, call_rate
from donjon.monitor.robust import Band
from donjon.monitor.service import check_modes, default_detectors
from monitor_support import FakeClock, make_engine, make_log

SMALL = Band(k=3.0, rel=1.0, abs_min=3.0, size=20, min_history=5)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Finding, int]] = []

    async def respond(self, finding: Finding, alert_seq: int) -> None:
        self.calls.append((finding, alert_seq))


def _call(actor: str = "key:k1") -> AuditEvent:
    detail = {"duration_ms": 20.0, "memory_mb": 128, "trigger": "invoke", "client": "192.0.2.1"}
    return AuditEvent(actor, "function.invoke", "f@1", "ok", detail)


async def _run(tmp_path: Path, mode: Mode) -> tuple[list[dict[str, Any]], RateDetector, Recorder]:
    """Eight quiet minutes (2 calls each), then 12 calls in one minute."""
    clock = FakeClock(now=60_000.0)
    log = make_log(make_engine(tmp_path))
    log.start()
    detector, responder = call_rate(SMALL, min_calls=2), Recorder()
    monitor = Monitor(log, [detector], {"call_rate": mode}, clock=clock, responder=responder)
    monitor.attach(asyncio.get_running_loop())
    try:
        for _ in range(8):
            for _ in range(2):
                await log.record(_call())
                await monitor.settle()
                clock.advance(1)
            clock.advance(58)
        for _ in range(12):
            await log.record(_call())
            await monitor.settle()
            clock.advance(1)
        await monitor.settle()
    finally:
        await monitor.close()
        log.stop()
    return log.tail(200), detector, responder


@pytest.mark.parametrize("mode", ["alert", "block"])
def test_a_burst_becomes_an_alert_resting_on_its_calls(tmp_path: Path, mode: Mode) -> None:
    """In alert and block modes the burst is an `alert.raised` record per subject,
    its evidence the invoke records of the burst's minute; block mode also responds."""
    records, _, responder = asyncio.run(_run(tmp_path, mode))
    alerts = [r for r in records if r["action"] == "alert.raised"]
    assert sorted(a["target"] for a in alerts) == ["function:f@1", "principal:key:k1"]
    by_seq = {r["seq"]: r for r in records}
    for alert in alerts:
        assert alert["detail"]["kind"] == "baseline.call_rate"
        assert alert["detail"]["mode"] == mode
        evidence = alert["detail"]["evidence"]
        assert len(evidence) == 6  # 2 + max(3 x MAD 0, 1 x 2, 3, 2 calls) = 5; the 6th crosses
        assert all(by_seq[s]["action"] == "function.invoke" for s in evidence)
    assert len(responder.calls) == (2 if mode == "block" else 0)


def test_learn_mode_raises_nothing_and_still_keeps_the_burst_out(tmp_path: Path) -> None:
    """In learn mode nothing is raised, and the burst is not learned either."""
    records, detector, responder = asyncio.run(_run(tmp_path, "learn"))
    assert [r for r in records if r["action"].startswith("alert.")] == []
    assert responder.calls == []
    state = detector.series.get(Subject("principal", "key:k1"))
    assert state is not None and state.window.stats() == (2.0, 0.0) and state.flagged


def test_learned_detectors_are_the_named_five() -> None:
    """The node's learned detectors answer to the names DONJON_MONITOR_MODES uses."""
    assert tuple(d.name for d in learned_detectors(3600.0)) == LEARNED


def test_the_node_runs_the_learned_detectors_in_the_modes_set() -> None:
    """The node's detectors include the learned ones; DONJON_MONITOR_MODES may name them."""
    settings = MonitorSettings(modes={"call_rate": "learn", "first_seen": "block"}, learning_s=60)
    detectors = default_detectors(settings)
    assert set(LEARNED) <= {d.name for d in detectors}
    assert check_modes(settings, detectors) == {"call_rate": "learn", "first_seen": "block"}
    (first_seen,) = [d for d in detectors if isinstance(d, FirstSeenDetector)]
    assert first_seen.learning_s == 60
