"""Enqueues noted in the journal of calls in flight before their commit
(triggers/queue/noted.py), on a real SQLite queue: each note ends once its record is
durable; a refused enqueue leaves none; one whose record failed stays, marked committed;
at the next start a note is recorded only if its row is stored or its commit returned,
from the row where the row holds it, marked `recovered`, with the right caller."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from sqlalchemy import text

from donjon.audit import AuditEvent, AuditLog, inflight
from donjon.audit.errors import AuditStorageFull
from donjon.audit.inflight import (
    QUEUED,
    QUEUING,
    CallsInFlight,
    InFlightFull,
    read_slots,
    reopen,
)
from donjon.secret import Secret
from donjon.triggers.envelope import Envelope
from donjon.triggers.queue import (
    AsyncInvocations,
    FunctionPolicy,
    QueueError,
    QueueFull,
    RetryPolicy,
    noted,
)
from donjon.triggers.queue.noted import enqueue_event, note_enqueue, record_noted
from queue_support import KeptRecords, envelope, sqlite_queue

POLICY = FunctionPolicy(RetryPolicy(attempts=1, backoff_s=1.0, max_age_s=3600), queued=2)


class _FailingLog(KeptRecords):
    """An audit log whose appends fail (its storage full: not tried again)."""

    async def record(self, event: AuditEvent) -> None:
        raise AuditStorageFull("no room for the record")


def _service(tmp_path: Path, audit: KeptRecords) -> tuple[AsyncInvocations, CallsInFlight]:
    queue = sqlite_queue(tmp_path)
    service = AsyncInvocations(queue, audit, lambda name: POLICY)
    journal = CallsInFlight(tmp_path / "calls-in-flight")
    service.notes.journal = journal
    return service, journal


def test_an_enqueue_recorded_leaves_no_note(tmp_path: Path) -> None:
    audit = KeptRecords()
    service, journal = _service(tmp_path, audit)
    queued = asyncio.run(service.enqueue(envelope("echo")))
    ids = asyncio.run(service.submit_all([envelope("batch"), envelope("batch")]))
    assert [e.detail["invocation_id"] for e in audit.events] == [queued.id, *ids]
    assert read_slots(tmp_path / "calls-in-flight") == []
    assert journal.in_flight() == 0


def test_a_refused_enqueue_leaves_no_note(tmp_path: Path) -> None:
    service, journal = _service(tmp_path, KeptRecords())
    with pytest.raises(QueueError):  # more than its bound of 2 at once
        asyncio.run(service.submit_all([envelope("batch")] * 3))
    asyncio.run(service.submit_all([envelope("batch")] * 2))
    with pytest.raises(QueueFull):
        asyncio.run(service.enqueue(envelope("batch")))
    assert read_slots(tmp_path / "calls-in-flight") == []
    assert journal.in_flight() == 0


def test_an_enqueue_whose_record_failed_stays_noted_as_committed(tmp_path: Path) -> None:
    service, journal = _service(tmp_path, _FailingLog())
    with pytest.raises(AuditStorageFull):
        asyncio.run(service.enqueue(envelope("echo")))
    (note,) = read_slots(tmp_path / "calls-in-flight")
    assert note.state == QUEUED
    assert journal.in_flight() == 1


def _left(tmp_path: Path, *notes: tuple[Envelope, str, int], size: int | None = None) -> Path:
    """A journal a killed node left, with `notes`: (envelope, invocation id, state), each
    noted when the audit log held `size` records."""
    path = tmp_path / "calls-in-flight"
    old = CallsInFlight(path)
    for env, invocation_id, state in notes:
        old.mark(note_enqueue(old, enqueue_event(env, invocation_id), size), state)
    old.close()
    return path


def test_the_next_start_records_the_noted_enqueues_whose_rows_are_stored(
    tmp_path: Path,
) -> None:
    service, journal = _service(tmp_path, KeptRecords())
    journal.close()
    stored = asyncio.run(service.queue.enqueue(envelope("echo"), POLICY.retry))
    caller = Envelope(**{**envelope("echo").__dict__, "request_id": "r-1", "client": "10.0.0.9"})
    path = _left(
        tmp_path,
        (caller, stored.id, QUEUING),  # killed after its commit, before it was marked
        (envelope("echo"), "never-committed", QUEUING),  # killed before its commit
        (envelope("gone"), "committed-gone", QUEUED),  # committed, its row pruned since
    )
    log = KeptRecords()
    engine = service.queue.engine  # type: ignore[attr-defined]  # the SQL queue's
    again = asyncio.run(reopen(path, log, lambda notes: record_noted(engine, log, notes)))  # type: ignore[arg-type]  # a stand-in log
    first, gone = log.events
    assert (first.actor, first.action, first.target, first.outcome) == (
        "key:abc",
        "invocation.enqueue",
        "echo",
        "ok",
    )
    assert first.detail["invocation_id"] == stored.id
    assert first.detail["request_id"] == "r-1"
    assert first.detail["client"] == "10.0.0.9"
    assert first.detail["recovered"] is True
    assert (gone.target, gone.detail["invocation_id"]) == ("gone", "committed-gone")
    assert read_slots(path) == []  # cleared: not recorded twice
    again.close()


def test_a_note_too_long_for_its_slot_is_made_whole_by_its_row(tmp_path: Path) -> None:
    """An actor, source and type too long for a slot: the note keeps the invocation id
    and says it was cut; the record takes the caller, source and type from the row."""
    service, journal = _service(tmp_path, KeptRecords())
    journal.close()
    long = Envelope(
        **{
            **envelope("echo").__dict__,
            "principal": "jwt:issuer:" + "u" * 600,
            "source": "/s" + "x" * 400,
            "type": "t" * 300,
        }
    )
    stored = asyncio.run(service.queue.enqueue(long, POLICY.retry))
    path = _left(tmp_path, (long, stored.id, QUEUED), (long, "row-gone", QUEUED))
    log = KeptRecords()
    engine = service.queue.engine  # type: ignore[attr-defined]  # the SQL queue's
    asyncio.run(record_noted(engine, log, read_slots(path)))
    whole, cut = log.events
    assert whole.actor == long.principal
    assert (whole.detail["source"], whole.detail["type"]) == (long.source[:300], long.type[:200])
    assert "note_cut" not in whole.detail
    assert cut.detail["invocation_id"] == "row-gone"
    assert cut.detail["note_cut"] is True
    # Not a cut name, which could be another caller's: its digest.
    assert cut.actor == "sha256:" + hashlib.sha256(long.principal.encode()).hexdigest()


class _HeldQueue:
    """A queue whose writes wait until `go` is set (enqueues waiting for the database)."""

    def __init__(self) -> None:
        self.go = asyncio.Event()

    async def enqueue(self, envelope: Envelope, retry: RetryPolicy, **_: object) -> object:
        await self.go.wait()
        raise QueueError("not stored")


def test_a_flood_of_enqueues_never_takes_the_slots_of_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enqueues waiting for the queue's database hold their notes: past MAX_NOTED they are
    refused (InFlightFull, 503), and the journal keeps room for the node's calls. Here on a
    journal of 1,024 slots (its share 256) flooded by 2,000 enqueues."""
    monkeypatch.setattr(inflight, "MAX_SLOTS", 1024)
    monkeypatch.setattr(noted, "MAX_NOTED", 256)
    journal = CallsInFlight(tmp_path / "calls-in-flight")
    held = _HeldQueue()
    service = AsyncInvocations(held, KeptRecords(), lambda name: POLICY)  # type: ignore[arg-type]  # a stand-in queue
    service.notes.journal = journal

    async def go() -> list[BaseException | object]:
        flood = [asyncio.create_task(service.enqueue(envelope("flood"))) for _ in range(2000)]
        await asyncio.sleep(0.1)
        calls = [journal.begin(f"r{n}", "f@1", "invoke", "key:other", 0.0) for n in range(600)]
        assert journal.in_flight() == 256 + 600
        for slot in calls:
            journal.end(slot)
        held.go.set()
        return await asyncio.gather(*flood, return_exceptions=True)

    answers = asyncio.run(go())
    assert sum(isinstance(a, InFlightFull) for a in answers) == 2000 - 256
    assert sum(isinstance(a, QueueError) for a in answers) == 256  # (nothing stored)
    assert journal.in_flight() == 0


def test_a_noted_enqueue_whose_record_the_log_holds_is_not_recorded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after its record's commit, before its note's end: the note holds the log's
    size when it was taken, and the next start finds the record after it, so appends none.
    One whose record is not there, or lies past LOOKED_AT records after the note's size,
    is recorded (repeated, never missing); an older node's note (no size) is recorded."""
    service, journal = _service(tmp_path, KeptRecords())
    journal.close()
    engine = service.queue.engine  # type: ignore[attr-defined]  # the SQL queue's
    audit = AuditLog(engine, Secret(bytes(range(32))))
    rows = [asyncio.run(service.queue.enqueue(envelope("echo"), POLICY.retry)) for _ in range(3)]
    held, missing, far = (r.id for r in rows)
    audit.record_now(AuditEvent("system", "function.deploy", "echo", "ok", {}))
    size = audit.size
    audit.record_now(enqueue_event(envelope("echo"), held))  # appended, then the kill
    for n in range(4):  # (others' records)
        audit.record_now(AuditEvent("system", "invocation.attempt", "echo", "ok", {"n": n}))
    audit.record_now(enqueue_event(envelope("echo"), far))  # 6 records after the size
    with engine.begin() as conn:  # a record made unreadable (tampered): not a stop at start
        conn.execute(
            text("UPDATE audit_log SET record = :r WHERE seq = 3"),
            {"r": b'{"action": "invocation.enqueue", [not json'},
        )
    monkeypatch.setattr(noted, "LOOKED_AT", 5)
    path = _left(
        tmp_path, *((envelope("echo"), i, QUEUED) for i in (held, missing, far)), size=size
    )
    log = KeptRecords()
    asyncio.run(record_noted(engine, log, read_slots(path)))
    assert [e.detail["invocation_id"] for e in log.events] == [missing, far]
    older = _left(tmp_path, (envelope("echo"), held, QUEUED))  # an older node's: no size
    log = KeptRecords()
    asyncio.run(record_noted(engine, log, read_slots(older)))
    assert [e.detail["invocation_id"] for e in log.events] == [held]
