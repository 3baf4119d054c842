"""The monitor's engine on a real audit log: alerts, dedup, modes, its own records."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from donjon.audit.log import AuditEvent, CommittedBatch, CommittedRecord
from donjon.monitor.alerts import AlertStore
from donjon.monitor.engine import Monitor
from donjon.monitor.findings import Finding, FindingError, Mode, Subject
from monitor_support import EveryDenial, FakeClock, make_engine, make_log


class Sink:
    def __init__(self) -> None:
        self.alerts: list[Mapping[str, Any]] = []

    def deliver(self, alert: Mapping[str, Any]) -> None:
        self.alerts.append(alert)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def respond(self, finding: Finding, alert_seq: int) -> None:
        self.calls.append((finding.kind, alert_seq))


def _denial(client: str) -> AuditEvent:
    return AuditEvent("anonymous", "auth.denied", "/v1/functions", "denied", {"client": client})


async def _run(
    tmp_path: Path, modes: Mapping[str, Mode], events: list[AuditEvent], clock: FakeClock
) -> tuple[list[dict[str, Any]], Sink, Recorder, EveryDenial]:
    log = make_log(make_engine(tmp_path))
    log.start()
    detector, sink, responder = EveryDenial(), Sink(), Recorder()
    monitor = Monitor(
        log, [detector], modes, clock=clock, responder=responder, sinks=[sink], tick_s=3600
    )
    monitor.attach(asyncio.get_running_loop())
    try:
        for event in events:
            await log.record(event)
            await monitor.settle()
            clock.advance(1)
        await monitor.settle()
    finally:
        await monitor.close()
        log.stop()
    return log.tail(100), sink, responder, detector


def test_finding_becomes_alert_record(tmp_path: Path) -> None:
    """A finding in alert mode is an alert.raised record naming its evidence."""
    clock = FakeClock()
    records, sink, responder, _ = asyncio.run(
        _run(tmp_path, {"every_denial": "alert"}, [_denial("10.0.0.1")], clock)
    )
    alerts = [r for r in records if r["action"] == "alert.raised"]
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["actor"] == "system:monitor"
    assert alert["target"] == "source:10.0.0.1"
    assert alert["outcome"] == "high"
    assert alert["detail"]["evidence"] == [1]
    assert alert["detail"]["kind"] == "auth.test"
    assert alert["detail"]["mode"] == "alert"
    assert [a["seq"] for a in sink.alerts] == [alert["seq"]]
    assert responder.calls == []


def test_learn_mode_raises_nothing(tmp_path: Path) -> None:
    """In learn mode the detector sees every record and nothing is raised."""
    records, sink, _, detector = asyncio.run(
        _run(tmp_path, {"every_denial": "learn"}, [_denial("a"), _denial("b")], FakeClock())
    )
    assert not [r for r in records if r["action"] == "alert.raised"]
    assert sink.alerts == []
    assert detector.seen == [1, 2]


def test_block_mode_calls_responder_with_alert_seq(tmp_path: Path) -> None:
    """In block mode the responder is called with the finding and its alert's seq."""
    records, _, responder, _ = asyncio.run(
        _run(tmp_path, {"every_denial": "block"}, [_denial("x")], FakeClock())
    )
    alert_seq = next(r["seq"] for r in records if r["action"] == "alert.raised")
    assert responder.calls == [("auth.test", alert_seq)]


def test_duplicates_within_window_are_suppressed(tmp_path: Path) -> None:
    """The same kind and subject raise once per window; the next alert counts the rest."""
    clock = FakeClock()

    async def go() -> list[dict[str, Any]]:
        log = make_log(make_engine(tmp_path))
        log.start()
        monitor = Monitor(log, [EveryDenial()], {}, clock=clock, dedup_s=60, tick_s=3600)
        monitor.attach(asyncio.get_running_loop())
        for _ in range(5):
            await log.record(_denial("s"))
            await monitor.settle()
            clock.advance(1)
        clock.advance(60)
        await log.record(_denial("s"))
        await monitor.settle()
        await monitor.close()
        log.stop()
        return [r for r in log.tail(100) if r["action"] == "alert.raised"]

    alerts = asyncio.run(go())
    assert len(alerts) == 2
    assert alerts[1]["detail"]["suppressed"] == 4


def test_monitor_never_examines_its_own_records(tmp_path: Path) -> None:
    """alert.* and response.* records are not fed to the detectors."""
    events = [_denial("a"), AuditEvent("system:responder", "response.throttle", "p", "ok")]
    records, _, _, detector = asyncio.run(_run(tmp_path, {}, events, FakeClock()))
    seqs = {r["action"]: r["seq"] for r in records}
    assert seqs["auth.denied"] in detector.seen
    assert seqs["alert.raised"] not in detector.seen
    assert seqs["response.throttle"] not in detector.seen


def test_finding_without_evidence_is_refused() -> None:
    """A finding must rest on at least one audit record."""
    with pytest.raises(FindingError):
        Finding("k", "d", "low", Subject("node", "n"), "s", (), 0.0)


def test_alert_is_indexed_and_watermark_follows(tmp_path: Path) -> None:
    """The raised alert is in the index with its record's seq; the watermark passes it."""
    engine = make_engine(tmp_path)

    async def go() -> None:
        log = make_log(engine)
        log.start()
        store = AlertStore(engine)
        store.catch_up(store.through())
        monitor = Monitor(log, [EveryDenial()], {}, index=store, tick_s=3600)
        monitor.attach(asyncio.get_running_loop())
        await log.record(_denial("10.9.9.9"))
        await monitor.settle()
        await monitor.close()
        log.stop()

    asyncio.run(go())
    store = AlertStore(engine)
    (alert,) = store.listing().alerts
    records = make_log(engine).tail(10)
    raised = next(r for r in records if r["action"] == "alert.raised")
    assert (alert["seq"], alert["ts"], alert["subject"]) == (
        raised["seq"],
        raised["ts"],
        "source:10.9.9.9",
    )
    through = store.through()
    assert through is not None and through >= raised["seq"]


def test_detector_bug_does_not_stop_the_others(tmp_path: Path) -> None:
    """A detector that raises is logged; the next detector still sees the record."""

    class Broken:
        name = "broken"

        def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
            raise RuntimeError("bug")

        def tick(self, now: float) -> list[Finding]:
            raise RuntimeError("bug")

    async def go() -> EveryDenial:
        log = make_log(make_engine(tmp_path))
        log.start()
        good = EveryDenial()
        monitor = Monitor(log, [Broken(), good], {"every_denial": "learn"}, tick_s=3600)
        monitor.attach(asyncio.get_running_loop())
        await log.record(_denial("a"))
        await monitor.settle()
        await monitor.tick()
        await monitor.close()
        log.stop()
        return good

    assert asyncio.run(go()).seen == [1]


class _Seen:
    """A detector that keeps what it was fed; `actions`, if given, is all it reads."""

    def __init__(self, name: str, actions: frozenset[str] | None) -> None:
        self.name = name
        if actions is not None:
            self.actions = actions
        self.seen: list[str] = []

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        self.seen.append(record.event.action)
        return []

    def tick(self, now: float) -> list[Finding]:
        return []


def test_a_detector_is_fed_only_the_actions_it_names(tmp_path: Path) -> None:
    """A detector naming its actions gets those records alone, in order; one naming
    none gets every record."""
    picky = _Seen("picky", frozenset({"auth.denied", "egress.connect"}))
    every = _Seen("every", None)
    actions = ["function.invoke", "auth.denied", "key.create", "egress.connect", "auth.denied"]

    async def run() -> None:
        log = make_log(make_engine(tmp_path))
        log.start()
        monitor = Monitor(log, [picky, every], {}, clock=FakeClock(), tick_s=3600)
        monitor.attach(asyncio.get_running_loop())
        try:
            for action in actions:
                await log.record(AuditEvent("key:k", action, "t", "ok"))
            await monitor.settle()
        finally:
            await monitor.close()
            log.stop()

    asyncio.run(run())
    assert picky.seen == ["auth.denied", "egress.connect", "auth.denied"]
    assert every.seen == actions


class _TwoFindings:
    """Two findings for each denial: its source, and the node's authentication."""

    name = "two_findings"
    actions = frozenset({"auth.denied"})

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        client = str(record.event.detail.get("client", ""))
        return [
            Finding(
                kind=f"test.{subject.kind}",
                detector=self.name,
                severity="high",
                subject=subject,
                summary=f"denied: {subject}",
                evidence=(record.seq,),
                ts=now,
            )
            for subject in (Subject("source", client), Subject("node", "authentication"))
        ]

    def tick(self, now: float) -> list[Finding]:
        return []


class _HeldResponder:
    """A response that takes a while: it waits until released."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def respond(self, finding: Finding, alert_seq: int) -> None:
        self.started.set()
        await self.release.wait()


def test_watermark_waits_for_every_alert_of_a_record(tmp_path: Path) -> None:
    """While the response to a record's first alert is under way, its second alert is not
    raised yet: a tick then must not save the index watermark past that record (a node
    dying then would never raise the second: its catch-up starts after the watermark)."""
    engine = make_engine(tmp_path)

    async def go() -> tuple[int | None, int | None, int]:
        log = make_log(engine)
        log.start()
        store = AlertStore(engine)
        store.catch_up(store.through())
        responder = _HeldResponder()
        monitor = Monitor(
            log,
            [_TwoFindings()],
            {"two_findings": "block"},
            responder=responder,
            index=store,
            tick_s=3600,
        )
        monitor.attach(asyncio.get_running_loop())
        try:
            await log.record(_denial("10.8.8.8"))
            await asyncio.wait_for(responder.started.wait(), 30)
            seq = next(r["seq"] for r in log.tail(10) if r["action"] == "auth.denied")
            await monitor.tick()  # the first alert raised, its response pending
            during = store.through()
            responder.release.set()
            await monitor.settle()
            await monitor.tick()
            return during, store.through(), seq
        finally:
            responder.release.set()
            await monitor.close()
            log.stop()

    during, after, seq = asyncio.run(go())
    assert during is None or during < seq, (during, seq)
    assert after is not None and after >= seq
    assert len(AlertStore(engine).listing().alerts) == 2


def test_batches_from_the_writer_process_skip_the_loops_wakeup_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer process's answers come on the running loop's own thread: the monitor
    enqueues their batches there and then, not through `call_soon_threadsafe` (a write to
    the loop's wake-up descriptor and a read of it), and still examines every record, in
    order."""
    threadsafe: list[Any] = []  # every callback handed to call_soon_threadsafe
    monitors: list[Monitor] = []

    async def run() -> tuple[list[dict[str, Any]], Sink]:
        loop = asyncio.get_running_loop()
        plain = loop.call_soon_threadsafe

        def counted(callback: Any, *args: Any, **kwargs: Any) -> asyncio.Handle:
            threadsafe.append(callback)
            return plain(callback, *args, **kwargs)

        monkeypatch.setattr(loop, "call_soon_threadsafe", counted)
        log = make_log(make_engine(tmp_path))
        log.start(process=True)
        sink = Sink()
        monitor = Monitor(
            log,
            [EveryDenial()],
            {"every_denial": "alert"},
            clock=FakeClock(),
            sinks=[sink],
            tick_s=3600,
        )
        monitors.append(monitor)
        monitor.attach(loop)
        try:
            await asyncio.sleep(0)  # the feed has started on this loop
            await asyncio.gather(*(log.record(_denial(f"10.0.0.{n}")) for n in range(1, 9)))
            for n in range(9, 12):
                await log.record(_denial(f"10.0.0.{n}"))
            await monitor.settle()
        finally:
            await monitor.close()
            log.stop()
        return log.tail(100), sink

    records, sink = asyncio.run(run())
    targets = [r["target"] for r in records if r["action"] == "alert.raised"]
    assert targets == [f"source:10.0.0.{n}" for n in range(1, 12)]
    assert len(sink.alerts) == 11
    # None of the monitor's own callbacks went through the loop's wake-up descriptor.
    assert not [cb for cb in threadsafe if getattr(cb, "__self__", None) is monitors[0]]


class _NoLog:
    """The audit log's listener hook, and nothing else (nothing is raised here)."""

    def add_listener(self, listener: Any) -> None:
        pass


def test_a_batch_on_the_loops_thread_waits_behind_those_on_their_way() -> None:
    """A batch committed on the loop's own thread is enqueued at once, unless batches
    handed over from another thread are still on their way through the loop's queue:
    then after them, so every record is examined, in seq order (enqueued first, the
    later batch would make the earlier one's records look replayed, and skip them)."""

    def batch(first: int) -> CommittedBatch:
        event = AuditEvent("anonymous", "auth.denied", "/", "denied", {})
        return CommittedBatch(tuple(CommittedRecord(first + i, 0.0, event) for i in (0, 1)), 0.0)

    class Seqs(_Seen):
        def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
            self.seen.append(str(record.seq))
            return []

    async def go() -> list[str]:
        detector = Seqs("seqs", None)
        monitor = Monitor(_NoLog(), [detector], {}, tick_s=3600)  # type: ignore[arg-type]  # a stand-in log
        monitor.attach(asyncio.get_running_loop())
        await asyncio.sleep(0)  # the feed has started on this loop's thread
        monitor._on_commit(batch(1))  # on the loop's thread, nothing on its way: at once
        other = threading.Thread(target=monitor._on_commit, args=(batch(3),))
        other.start()
        other.join()  # handed over: on its way through the loop's queue
        monitor._on_commit(batch(5))  # behind it
        monitor._on_commit(batch(7))
        await monitor.settle()
        monitor._on_commit(batch(9))  # nothing on its way again
        await monitor.settle()
        await monitor.close()
        return detector.seen

    assert asyncio.run(go()) == [str(seq) for seq in range(1, 11)]
