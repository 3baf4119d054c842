"""A detector's failures in the node's log: each kind with its traceback at most once per
interval, the rest counted and said with the next one logged (monitor/faults.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from donjon.audit.log import AuditEvent, CommittedRecord
from donjon.monitor import faults as faults_module
from donjon.monitor.engine import Monitor
from donjon.monitor.faults import FaultLog
from donjon.monitor.findings import Finding
from monitor_support import EveryDenial, FakeClock, make_engine, make_log


def _fail(faults: FaultLog, kind: str, n: int) -> None:
    try:
        raise RuntimeError(f"bug {n}")
    except RuntimeError:
        faults.exception(kind, "monitor: detector %s failed on seq %d", kind, n)


def _logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "donjon.monitor"]


def test_a_kind_is_logged_once_per_interval_and_the_rest_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    faults = FaultLog(interval_s=60.0, clock=clock)
    with caplog.at_level(logging.ERROR, logger="donjon.monitor"):
        for n in range(1, 6):
            _fail(faults, "rate", n)
            clock.advance(10)  # 1 to 5, 0 to 40 s after the first
        assert [r.getMessage() for r in _logged(caplog)] == [
            "monitor: detector rate failed on seq 1"
        ]
        assert _logged(caplog)[0].exc_info is not None  # with its traceback
        assert faults.unlogged("rate") == 4
        clock.advance(20)  # 70 s after the first
        _fail(faults, "rate", 6)
    last = _logged(caplog)[-1]
    assert len(_logged(caplog)) == 2
    assert last.getMessage() == (
        "monitor: detector rate failed on seq 6 (4 more since the last one logged, "
        "70 s before, not logged)"
    )
    assert last.exc_info is not None and "bug 6" in str(last.exc_info[1])
    assert faults.unlogged("rate") == 0


def test_kinds_are_counted_apart(caplog: pytest.LogCaptureFixture) -> None:
    faults = FaultLog(interval_s=60.0, clock=FakeClock())
    with caplog.at_level(logging.ERROR, logger="donjon.monitor"):
        for n in range(3):
            _fail(faults, "rate", n)
            _fail(faults, "cost", n)
    assert [r.getMessage() for r in _logged(caplog)] == [
        "monitor: detector rate failed on seq 0",
        "monitor: detector cost failed on seq 0",
    ]
    assert (faults.unlogged("rate"), faults.unlogged("cost")) == (2, 2)


def test_the_table_of_kinds_stays_bounded(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its bound the table starts over: a kind seen again is logged again."""
    monkeypatch.setattr(faults_module, "_MAX_KINDS", 4)
    faults = FaultLog(interval_s=60.0, clock=FakeClock())
    with caplog.at_level(logging.ERROR, logger="donjon.monitor"):
        for kind in "abcde":
            _fail(faults, kind, 1)
        _fail(faults, "a", 2)  # forgotten when "e" came: logged
        _fail(faults, "e", 2)  # kept: counted
    assert len(faults._kinds) <= 4
    assert len(_logged(caplog)) == 6
    assert faults.unlogged("e") == 1


def test_a_detector_failing_on_every_record_is_logged_once_and_blinds_no_other(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the engine: a detector raising on each of 50 records and at each tick is
    logged once for each (with the traceback), counted for the rest; the next detector
    still sees every record."""

    class Broken:
        name = "broken"

        def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
            raise RuntimeError(f"bug at {record.seq}")

        def tick(self, now: float) -> list[Finding]:
            raise RuntimeError("bug at tick")

    async def go() -> tuple[Monitor, EveryDenial]:
        log = make_log(make_engine(tmp_path))
        log.start()
        good = EveryDenial()
        monitor = Monitor(log, [Broken(), good], {"every_denial": "learn"}, tick_s=3600)
        monitor.attach(asyncio.get_running_loop())
        for i in range(50):
            await log.record(
                AuditEvent("anonymous", "auth.denied", "/v1/x", "denied", {"client": f"c{i}"})
            )
        await monitor.settle()
        await monitor.tick()
        await monitor.tick()
        await monitor.close()
        log.stop()
        return monitor, good

    with caplog.at_level(logging.ERROR, logger="donjon.monitor"):
        monitor, good = asyncio.run(go())
    assert good.seen == list(range(1, 51))
    messages = [r.getMessage() for r in _logged(caplog)]
    assert messages == [
        "monitor: detector broken failed on seq 1",
        "monitor: detector broken failed to tick",
    ], messages
    assert all(r.exc_info is not None for r in _logged(caplog))
    assert monitor.faults.unlogged("broken") == 49
    assert monitor.faults.unlogged("broken tick") == 1
