"""The monitor: feeds committed audit records to the detectors and raises their alerts.

The audit log hands each committed batch to `Monitor._on_commit`, on the loop's
thread (the writer process's answers) or in its writer thread; that only
schedules the batch on the event loop (bounded: past
`max_backlog` records, batches are dropped, counted and logged, never queued
without limit). One task feeds the records, in seq order, to every detector,
and a second ticks the detectors so that windows close without new records.
A batch is examined in one loop: each record goes to the detectors that read
its action (routes.py: the learned baselines fed together), and its findings
are raised once they have all seen it, before the next record is examined.

A finding from a detector in `alert` or `block` mode becomes an `alert.raised`
audit record (actor `system:monitor`, target `kind:id` of its subject,
outcome its severity), at most one per (kind, subject) per `dedup_s` (the
next one after the window says how many were suppressed). Once the record is
committed, the alert is indexed, handed to the sinks (webhooks), and in
`block` mode to the responder with the alert's seq. In `learn` mode nothing is
raised. The monitor never feeds its own records (`alert.*`) nor the
responder's (`response.*`) to the detectors, so it cannot feed on itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from donjon.audit.log import AuditEvent, AuditLog, CommittedBatch, CommittedRecord
from donjon.monitor.alerts import ACTOR, RAISED, alert_view
from donjon.monitor.detector import Detector
from donjon.monitor.faults import FaultLog
from donjon.monitor.findings import Finding, Mode
from donjon.monitor.routes import Observer, route

__all__ = ["ACTOR", "RAISED", "AlertIndex", "AlertSink", "Monitor", "Responder"]

#: Record actions the monitor never feeds to its detectors (its own and the responder's).
_OWN_PREFIXES = ("alert.", "response.")
#: Record actions whose detectors the monitor remembers (there are a few dozen).
_MAX_ROUTES = 1024
#: Seconds `close` waits for the records already received to be examined.
CLOSE_TIMEOUT_S = 10.0
#: Evidence seqs kept in one alert record; past it the count says how many there were.
MAX_EVIDENCE = 64
#: A finding's detail past this many characters of JSON is left out of its record.
MAX_DETAIL_CHARS = 8192

log = logging.getLogger("donjon.monitor")


class Responder(Protocol):
    """Acts on an alert raised in `block` mode (implemented in monitor/responses.py)."""

    async def respond(self, finding: Finding, alert_seq: int) -> None: ...


class AlertSink(Protocol):
    """Takes raised alerts elsewhere (webhooks). Queues: never blocks the loop."""

    def deliver(self, alert: Mapping[str, Any]) -> None: ...


class AlertIndex(Protocol):
    """Keeps raised alerts where `GET /v1/alerts` finds them without reading the log."""

    async def add(self, alert: Mapping[str, Any]) -> None: ...

    async def indexed_through(self, seq: int) -> None:
        """Every alert record up to `seq` is indexed (what a catch-up starts after)."""
        ...


class Monitor:
    """Runs the detectors over the audit log as it is committed."""

    def __init__(
        self,
        audit: AuditLog,
        detectors: Sequence[Detector],
        modes: Mapping[str, Mode],
        *,
        clock: Callable[[], float] = time.time,
        responder: Responder | None = None,
        sinks: Sequence[AlertSink] = (),
        index: AlertIndex | None = None,
        default_mode: Mode = "alert",
        dedup_s: float = 300.0,
        tick_s: float = 5.0,
        max_backlog: int = 100_000,
        max_dedup: int = 10_000,
    ) -> None:
        self._audit = audit
        self._detectors = list(detectors)
        self._modes = dict(modes)
        self._default_mode: Mode = default_mode
        self._clock = clock
        self._responder = responder
        self._sinks = list(sinks)
        self._index = index
        self._dedup_s = dedup_s
        self._tick_s = tick_s
        self._max_backlog = max_backlog
        self._max_dedup = max_dedup
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The thread that runs `_loop` (known once the feed has started on it).
        self._loop_thread = 0
        self._backlog: deque[CommittedBatch] = deque()
        #: Batches handed over through the loop's queue (from another thread), not yet
        #: enqueued: while there are some, a batch from the loop's own thread waits behind
        #: them, so batches are enqueued in the order they were committed.
        self._handed: deque[CommittedBatch] = deque()
        self._backlog_records = 0
        #: What the feed task waits on for the next batch while it has none (made in
        #: `attach`, then by the task each time it runs out); None while it examines, or
        #: has a batch to. `_idle` is set exactly while there is one.
        self._parked: asyncio.Future[None] | None = None
        self._running = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        #: (kind, subject[, key]) -> (time last raised, findings suppressed since).
        self._raised: dict[tuple[str, ...], tuple[float, int]] = {}
        #: Alert ids whose record is being written -> the future of its (seq, ts).
        self._waiting: dict[str, asyncio.Future[tuple[int, float]]] = {}
        #: Alerts being raised now, and the record whose findings are being raised (the
        #: index watermark waits for them).
        self._inflight = 0
        #: The index watermark last saved; None once an alert failed to be indexed
        #: (the next start's catch-up redoes it from there).
        self._through: int | None = 0
        #: Record action -> what reads it (its detectors' `actions`, detector.py; routes.py).
        self._routes: dict[str, list[Observer]] = {}
        #: Detectors' failures, logged with a traceback at most once a minute each.
        self.faults = FaultLog()
        #: Records dropped because the backlog was full (the monitor fell behind).
        self.dropped = 0
        #: The last seq fed to the detectors.
        self.seen = 0
        #: Alerts raised since start.
        self.raised = 0

    def mode(self, detector: str) -> Mode:
        """The detector's mode: what DONJON_MONITOR_MODES says, else the default."""
        return self._modes.get(detector, self._default_mode)

    # -- wiring -------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop, *, paused: bool = False) -> None:
        """Listen to the audit log, and start the feeding and ticking tasks on `loop`.

        `paused`: batches are kept, not examined, until `resume` (after a `replay`).
        """
        if self._loop is not None:
            return
        self._loop = loop
        if not paused:
            self._running.set()
        self._parked = loop.create_future()
        self._audit.add_listener(self._on_commit)
        self._tasks = [
            loop.create_task(self._feed(), name="monitor-feed"),
            loop.create_task(self._ticker(), name="monitor-tick"),
        ]

    def seed(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        """Alerts raised before a restart (from the index) count for deduplication."""
        for alert in alerts:
            key = _dedup_key(
                str(alert.get("kind", "")), str(alert.get("subject", "")), alert.get("key")
            )
            ts = float(alert.get("ts", 0.0))
            if ts > self._raised.get(key, (float("-inf"), 0))[0]:
                self._raised[key] = (ts, 0)

    async def replay(self, records: Iterable[CommittedRecord]) -> None:
        """Examine records committed before this monitor listened (a node that died
        before examining them): the same findings, and alerts, as if it had."""
        await self._examine_all(records)

    def resume(self) -> None:
        """Examine the batches received while paused, and the next ones."""
        self._running.set()

    async def close(self) -> None:
        """Stop listening and feeding (what was received is processed first)."""
        if self._closed:
            return
        with contextlib.suppress(TimeoutError):  # a stuck detector must not hold the shutdown
            await asyncio.wait_for(self.settle(), CLOSE_TIMEOUT_S)
        await self._save_watermark()
        self.faults.flush(everything=True)
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def _on_commit(self, batch: CommittedBatch) -> None:
        """Hand the batch to the loop, nothing more. The writer process's answers come on
        the running loop's own thread (audit/remote.py): enqueued there and then, with
        nothing queued on the loop for it (a `call_soon` cost about 7,500 instructions a
        batch: its handle, and its turn of the loop), unless batches from another
        thread are still on their way (then behind them). From any other thread, or a
        loop not running, through `call_soon_threadsafe` (a closed loop: dropped, as
        before). `_enqueue` only queues the batch for the feed task, which examines it."""
        loop = self._loop
        if loop is None or self._closed:
            return
        if threading.get_ident() == self._loop_thread and loop.is_running():
            if self._handed:  # (deque operations are atomic: other threads append)
                self._handed.append(batch)  # in order: after those on their way
            else:
                self._enqueue(batch)
            return
        self._handed.append(batch)
        with contextlib.suppress(RuntimeError):  # the loop closed under us
            loop.call_soon_threadsafe(self._take_handed)

    def _take_handed(self) -> None:
        """Enqueue the batches handed over so far, in order (on the loop's thread)."""
        handed = self._handed
        while handed:
            self._enqueue(handed.popleft())

    def _enqueue(self, batch: CommittedBatch) -> None:
        if self._waiting:  # the seq of an alert being raised, first of all
            self._resolve(batch)
        if self._closed:
            return
        if self._backlog_records + len(batch.records) > self._max_backlog:
            self.dropped += len(batch.records)
            log.warning(
                "monitor: %d record(s) (seq %d-%d) not examined, the backlog is full"
                " (%d dropped since start)",
                len(batch.records),
                batch.records[0].seq if batch.records else 0,
                batch.records[-1].seq if batch.records else 0,
                self.dropped,
            )
            return
        self._backlog.append(batch)
        self._backlog_records += len(batch.records)
        parked = self._parked
        if parked is not None:  # the feed task waits for a batch: wake it
            self._parked = None
            self._idle.clear()
            if not parked.done():  # (a feed task cancelled: its future with it)
                parked.set_result(None)

    def _resolve(self, batch: CommittedBatch) -> None:
        """Hand the alerts being raised in `batch` their seq and time (`_raise` waits)."""
        for record in batch.records:
            if record.event.action == RAISED and record.event.actor == ACTOR:
                waiting = self._waiting.pop(str(record.event.detail.get("id", "")), None)
                if waiting is not None and not waiting.done():
                    waiting.set_result((record.seq, record.ts))

    async def settle(self) -> None:
        """Return once every batch received so far has been examined (tests, shutdown)."""
        # Batches already committed may still be queued (call_soon or call_soon_threadsafe).
        await asyncio.sleep(0)
        if not self._tasks:
            return
        await self._idle.wait()

    # -- feeding ------------------------------------------------------------------

    async def _feed(self) -> None:
        """Examine the batches in the order they were enqueued; between them, wait on a
        future of its own (`_parked`, which `_enqueue` resolves: an `asyncio.Event`'s
        `wait`, `set` and `clear` cost three Python calls and a coroutine a batch)."""
        self._loop_thread = threading.get_ident()
        await self._running.wait()
        loop = asyncio.get_running_loop()
        while True:
            parked = self._parked
            if parked is not None:  # (None: a batch came meanwhile)
                await parked
            backlog = self._backlog
            while backlog:
                batch = backlog.popleft()
                self._backlog_records -= len(batch.records)
                await self._examine_all(batch.records)
            self._idle.set()
            self._parked = loop.create_future()

    async def _examine_all(self, records: Iterable[CommittedRecord]) -> None:
        """Examine records in order: a batch in one loop, with no coroutine per record (a
        record's findings are raised before the next record is examined, as ever)."""
        routes = self._routes
        # In flight until the last record's last finding is raised: the index watermark (at
        # `seen`) must not pass a record while a response to an earlier one runs. Counted
        # once for the batch: the loop yields only inside `_raise`, a record in flight then.
        self._inflight += 1
        try:
            for record in records:
                try:
                    # The findings of the record, from every detector that reads it, in
                    # their order (written out here, not a method: this runs for every record).
                    if record.seq <= self.seen:  # replayed already
                        continue
                    self.seen = record.seq
                    action = record.event.action
                    steps = routes.get(action)  # (`_reading`'s own lookup, inline)
                    if steps is None:
                        steps = self._reading(action)
                    if not steps:  # the monitor's own records, and what no detector reads
                        continue
                    now = self._clock()
                    findings: list[Finding] = []
                    for step in steps:
                        try:
                            findings += step.observe(record, now)
                        except Exception:  # one detector's bug must not blind the others
                            name = step.name
                            self.faults.exception(
                                name, "monitor: detector %s failed on seq %d", name, record.seq
                            )
                    for finding in findings:
                        await self._raise(finding)
                except Exception:  # the feed goes on whatever one record did
                    # Not rate-limited: a finding lost here may be an alert never raised.
                    log.exception("monitor: examining seq %d failed", record.seq)
        finally:
            self._inflight -= 1

    def _reading(self, action: str) -> list[Observer]:
        """What reads records of `action`: its detectors in their order (routes.py); none
        for the monitor's own records and the responder's (it must not feed on itself)."""
        found = self._routes.get(action)
        if found is None:
            own = action.startswith(_OWN_PREFIXES)
            found = [] if own else route(self._detectors, action, self.faults)
            if len(self._routes) < _MAX_ROUTES:  # actions are a small set; a flood of made-up
                self._routes[action] = found  # ones is routed again each time, not kept
        return found

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            await self.tick()

    async def tick(self) -> None:
        """Close the detectors' windows due by now, and forget expired dedup entries."""
        now = self._clock()
        for detector in self._detectors:
            try:
                findings = detector.tick(now)
            except Exception:
                self.faults.exception(
                    f"{detector.name} tick", "monitor: detector %s failed to tick", detector.name
                )
                continue
            for finding in findings:
                await self._raise(finding)
        self.faults.flush()  # failures counted and not logged, once their minute is over
        expired = [k for k, (at, _) in self._raised.items() if now - at >= self._dedup_s]
        for key in expired:
            del self._raised[key]
        await self._save_watermark()

    async def _save_watermark(self) -> None:
        """Every alert record up to what the feed has examined is indexed: say so."""
        through = self._through
        if self._index is None or through is None or self._inflight or self.seen <= through:
            return
        seen = self.seen
        try:
            await self._index.indexed_through(seen)
        except Exception:
            log.exception("monitor: the alerts index watermark could not be saved")
            return
        if self._through is not None:
            self._through = max(self._through, seen)

    # -- raising --------------------------------------------------------------------

    def _deduplicated(self, finding: Finding, now: float) -> int | None:
        """None if an alert of this kind and subject was raised within the window, else
        the number of findings suppressed since the last one."""
        key = _dedup_key(finding.kind, str(finding.subject), finding.key)
        last = self._raised.get(key)
        if last is not None and now - last[0] < self._dedup_s:
            self._raised[key] = (last[0], last[1] + 1)
            return None
        if len(self._raised) >= self._max_dedup and key not in self._raised:
            oldest = min(self._raised, key=lambda k: self._raised[k][0])
            del self._raised[oldest]
        self._raised[key] = (now, 0)
        return last[1] if last is not None else 0

    async def _raise(self, finding: Finding) -> None:
        mode = self.mode(finding.detector)
        if mode == "learn":
            return
        suppressed = self._deduplicated(finding, self._clock())
        if suppressed is None:
            return
        event = _alert_event(finding, mode, suppressed)
        alert_id = str(event.detail["id"])
        waiting: asyncio.Future[tuple[int, float]] = asyncio.get_running_loop().create_future()
        self._waiting[alert_id] = waiting
        self._inflight += 1
        try:
            try:
                await self._audit.record(event)
                seq, ts = await asyncio.wait_for(waiting, timeout=30)
            except Exception:
                log.exception(
                    "monitor: alert %s on %s could not be recorded", finding.kind, finding.subject
                )
                return
            finally:
                self._waiting.pop(alert_id, None)
            self.raised += 1
            alert = alert_view(seq, ts, event)
            if self._index is not None:
                try:
                    await self._index.add(alert)
                except Exception:
                    log.exception("monitor: alert seq %d could not be indexed", seq)
                    self._through = None
        finally:
            self._inflight -= 1
        for sink in self._sinks:
            try:
                sink.deliver(alert)
            except Exception:
                log.exception("monitor: alert seq %d could not be handed to %r", seq, sink)
        if mode == "block" and self._responder is not None:
            try:
                await self._responder.respond(finding, seq)
            except Exception:
                log.exception("monitor: the response to alert seq %d failed", seq)


def _alert_event(finding: Finding, mode: Mode, suppressed: int) -> AuditEvent:
    evidence = sorted(set(finding.evidence))
    detail: dict[str, Any] = {
        "id": f"alert_{uuid.uuid4().hex}",
        "kind": finding.kind,
        "detector": finding.detector,
        "mode": mode,
        "summary": finding.summary[:500],
        "evidence": evidence[:MAX_EVIDENCE],
        "detail": _jsonable(finding.detail),
        "finding_ts": finding.ts,
    }
    if len(evidence) > MAX_EVIDENCE:
        detail["evidence_count"] = len(evidence)
    if suppressed:
        detail["suppressed"] = suppressed
    if finding.key:
        detail["key"] = finding.key[:256]
    return AuditEvent(ACTOR, RAISED, str(finding.subject), finding.severity, detail)


def _dedup_key(kind: str, subject: str, key: object) -> tuple[str, ...]:
    """What deduplication tells alerts apart by: kind and subject, and the finding's key."""
    return (kind, subject, key) if isinstance(key, str) and key else (kind, subject)


def _jsonable(detail: Mapping[str, Any]) -> dict[str, Any]:
    """The finding's detail if it is JSON (a bad one must not fail others' appends)."""
    try:
        text = json.dumps(dict(detail), allow_nan=False)
    except (TypeError, ValueError):
        log.warning("monitor: a finding's detail is not JSON; it is left out")
        return {"unrecorded": "detail was not JSON"}
    if len(text) > MAX_DETAIL_CHARS:
        log.warning("monitor: a finding's detail of %d chars is left out", len(text))
        return {"unrecorded": f"detail of {len(text)} chars"}
    value: dict[str, Any] = json.loads(text)
    return value
