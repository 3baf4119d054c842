"""A detector's failures in the node's log: each kind with its traceback at most once per
interval, the rest counted and said with the next one logged (monitor/faults.py)."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from donjon.audit.log import AuditEvent, CommittedRecord
from donjon.monitor import faults as faults_module
from donjon.monitor.baselines import SeriesDetector
from donjon.monitor.calls import Call
from donjon.monitor.engine import Monitor
from donjon.monitor.faults import FaultLog
from donjon.monitor.findings import Finding, Subject
from donjon.monitor.robust import Band
from donjon.monitor.routes import SeriesPass, route
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


def test_failures_counted_are_said_once_their_interval_is_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A burst then silence: the tick after the interval says how many were not logged,
    and the kind's next failure is logged in full again."""
    clock = FakeClock()
    faults = FaultLog(interval_s=60.0, clock=clock)
    with caplog.at_level(logging.ERROR, logger="donjon.monitor"):
        for n in range(3):
            _fail(faults, "rate", n)
        _fail(faults, "cost", 0)
        clock.advance(30)
        faults.flush()  # within the interval: nothing said yet
        assert len(_logged(caplog)) == 2
        clock.advance(31)
        faults.flush()
        said = _logged(caplog)[2:]
        assert [r.getMessage() for r in said] == [
            "monitor: rate failed 2 more times in the 61 s after the one logged"
        ]
        assert said[0].exc_info is None
        assert faults.unlogged("rate") == 0
        _fail(faults, "rate", 9)
        assert _logged(caplog)[-1].getMessage() == "monitor: detector rate failed on seq 9"
        assert _logged(caplog)[-1].exc_info is not None
        _fail(faults, "rate", 10)
        faults.flush(everything=True)  # closing: said whatever its age
    assert _logged(caplog)[-1].getMessage() == (
        "monitor: rate failed 1 more times in the 0 s after the one logged"
    )
    assert _logged(caplog)[3].lineno != _logged(caplog)[-1].lineno  # the caller's line


class _Baseline(SeriesDetector[int]):
    """A learned baseline that finds nothing, or (`raising`) raises on every call."""

    kind = "baseline.test"

    def __init__(self, name: str, raising: bool) -> None:
        super().__init__(Band(), 5000)
        self.name, self.raising, self.calls = name, raising, 0

    def new_state(self) -> int:
        return 0

    def see(self, subject: Subject, call: Call, now: float) -> Finding | None:
        self.calls += 1
        if self.raising:
            raise RuntimeError(f"bug at {call.seq}")
        return None


def test_a_baseline_failing_in_the_pass_is_logged_once_under_its_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Learned baselines fed together (routes.SeriesPass): the one that raises on every
    call is logged once, under its own name; the one after it sees every call."""
    faults = FaultLog()
    broken, quiet = _Baseline("broken", raising=True), _Baseline("quiet", raising=False)
    (step,) = route([broken, quiet], "function.invoke", faults)
    assert isinstance(step, SeriesPass)
    detail: dict[str, Any] = {"duration_ms": 5.0, "memory_mb": 64, "client": "203.0.113.9"}
    with caplog.at_level(logging.ERROR, logger="donjon.monitor"):
        for seq in range(1, 31):
            event = AuditEvent("key:k1", "function.invoke", "fn@1", "ok", detail)
            assert step.observe(CommittedRecord(seq, 1000.0 + seq, event), 1000.0 + seq) == []
    assert [r.getMessage() for r in _logged(caplog)] == ["monitor: detector broken failed on seq 1"]
    assert faults.unlogged("broken") == 29
    # Each call has two subjects (its function, its caller): the broken one raised at
    # the first of each, the quiet one saw both.
    assert (broken.calls, quiet.calls) == (30, 60)
    assert re.search(r"routes\.py$", _logged(caplog)[0].pathname)


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
    assert messages[:2] == [
        "monitor: detector broken failed on seq 1",
        "monitor: detector broken failed to tick",
    ], messages
    assert all(r.exc_info is not None for r in _logged(caplog)[:2])
    # Closing said the ones counted: 49 records and one tick.
    assert re.fullmatch(
        r"monitor: broken failed 49 more times in the \d+ s after the one logged", messages[2]
    ), messages
    assert re.fullmatch(
        r"monitor: broken tick failed 1 more times in the \d+ s after the one logged",
        messages[3],
    ), messages
    assert len(messages) == 4
    assert monitor.faults.unlogged("broken") == 0
