"""An async call's enqueue, noted where the node's kill cannot take it.

An enqueue commits its queue row, then appends its `invocation.enqueue` record: a node
killed between the two (SIGKILL, the OOM killer, `gateway/crash_stop.py`) left a call
that runs (its row) with no record that it was accepted. So the enqueue is noted in the
journal of calls in flight (audit/inflight.py) before its commit, with the record it is
to append (its invocation id chosen beforehand), marked once the commit returned, and
freed once the record is durable. At the next start, before the node serves,
`record_noted` appends the record of each enqueue left noted whose row is stored (or
whose commit returned, should its row be gone since), marked `recovered`; one whose
commit never happened has no row and gets none. A note holds the log's size when it was
taken, so a start reads the records appended since (at most `LOOKED_AT` of them) and
appends no record the log already holds: a kill after the record's commit, before its
note's end (the writer committed, the node had not read its answer), repeated it
before. Past `LOOKED_AT` records a record may be repeated, never missing.

The journal is the node's own (its data dir, one node at a time: docs/limits.md), so a
start records only its own node's enqueues, never those of another node sharing the
queue's database, whose notes are in that node's journal.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Engine, and_, select

from donjon.audit import AuditEvent
from donjon.audit.changes import Recorder
from donjon.audit.inflight import (
    MAX_SLOTS,
    NOTE_BYTES,
    QUEUED,
    QUEUING,
    CallsInFlight,
    InFlightFull,
    Note,
)
from donjon.audit.log import AuditLog
from donjon.store.tables import audit_log
from donjon.store.tables import invocations as inv
from donjon.triggers.envelope import Envelope

__all__ = ["MAX_NOTED", "EnqueueNotes", "enqueue_event", "note_enqueue", "record_noted"]

log = logging.getLogger("donjon.queue")

#: The most invocation ids one read of the queue asks for.
_CHUNK = 500
#: The most enqueues noted at once: a quarter of the journal (an S3 push notes up to 1,000,
#: and enqueues waiting for the queue's database hold their notes), so that a flood of
#: them is refused (503) and never takes the slots of the node's calls (audit/inflight.py).
MAX_NOTED = MAX_SLOTS // 4
#: A note's JSON (one encoder: `json.dumps` with options makes one a call).
_JSON = json.JSONEncoder(separators=(",", ":"))
#: The fields of a record its row holds (left out of a note too long for its slot).
_ROW_FIELDS = ("source", "type")
#: The most records after a note's log size that a start reads for its record.
LOOKED_AT = 100_000


def enqueue_event(envelope: Envelope, invocation_id: str) -> AuditEvent:
    """The enqueue's record (no record carries an event's body)."""
    return AuditEvent(
        envelope.principal or envelope.trigger,
        "invocation.enqueue",
        envelope.function,
        "ok",
        {
            "invocation_id": invocation_id,
            "trigger": envelope.trigger,
            "source": envelope.source[:300],
            "type": envelope.type[:200],
            **(_delivery(envelope.delivery_id) if envelope.delivery_id else {}),
            **({"request_id": envelope.request_id} if envelope.request_id else {}),
            **({"client": envelope.client} if envelope.client else {}),
            "bytes": len(envelope.event),
        },
    )


def _delivery(delivery_id: str) -> dict[str, str]:
    """The producer's delivery id as the append-only audit log keeps it: its SHA-256 (hex, 32
    digits), which matches a known id without holding it. An S3 record's id holds its object
    key (`bucket/key/sequencer`), a value of the event the audit log must not keep."""
    return {"delivery_sha256": hashlib.sha256(delivery_id.encode()).hexdigest()[:32]}


class EnqueueNotes:
    """The enqueues of one node noted in its journal (`journal`; None: none are noted, as
    in a queue tested alone), at most MAX_NOTED at once."""

    __slots__ = ("audit", "journal", "noted")

    def __init__(self) -> None:
        self.journal: CallsInFlight | None = None
        #: The log the records go to: its size goes in each note (set with `journal`).
        self.audit: AuditLog | None = None
        self.noted = 0

    def take(self, events: Sequence[AuditEvent]) -> list[int]:
        """Note each enqueue before its commit; their slots. `InFlightFull` (503, nothing
        stored) past MAX_NOTED, or when the journal is full."""
        journal = self.journal
        if journal is None:
            return []
        if self.noted + len(events) > MAX_NOTED:
            raise InFlightFull(
                f"{self.noted} enqueues are being taken on this node, as many as it notes",
                hint="retry after the Retry-After seconds",
            )
        notes: list[int] = []
        size = None if self.audit is None else self.audit.size
        try:
            for event in events:
                notes.append(note_enqueue(journal, event, size))
                self.noted += 1
        except BaseException:
            self.forget(notes)
            raise
        return notes

    def committed(self, notes: list[int]) -> None:
        """Their commit returned: recorded at the next start, whether their rows stay."""
        journal = self.journal
        if journal is not None:
            for slot in notes:
                journal.mark(slot, QUEUED)

    def end(self, slot: int) -> None:
        """Its record is durable (or nothing was stored): its note is done with."""
        journal = self.journal
        if journal is not None:
            journal.end(slot)
            self.noted -= 1

    def forget(self, notes: list[int]) -> None:
        """Nothing of theirs was stored (refused, or the write failed)."""
        for slot in notes:
            self.end(slot)


def note_enqueue(journal: CallsInFlight, event: AuditEvent, size: int | None = None) -> int:
    """Note `event`'s enqueue before its commit, `size` being the audit log's (its record
    comes after); its slot (`mark` it QUEUED once the commit returned, `end` it once the
    record is durable)."""
    return journal.note(QUEUING, _text(event, size), time.perf_counter())


def _text(event: AuditEvent, size: int | None) -> bytes:
    """The note: [actor, target, detail, size] in JSON. One too long for its slot leaves
    out what the row holds: the source and type, then the actor's name, given by its
    SHA-256 (as audit/inflight.py gives a call's: a cut name could be another caller's)."""
    actor, detail = event.actor, event.detail
    text = _JSON.encode([actor, event.target, detail, size]).encode()
    if len(text) <= NOTE_BYTES:
        return text
    detail = {k: v for k, v in detail.items() if k not in _ROW_FIELDS}
    detail["note_cut"] = True  # (its record says so, unless the row makes it whole)
    text = _JSON.encode([actor, event.target, detail, size]).encode()
    if len(text) <= NOTE_BYTES:
        return text
    named = "sha256:" + hashlib.sha256(actor.encode()).hexdigest()  # (never a cut name)
    return _JSON.encode([named, event.target, detail, size]).encode()


def _stored(engine: Engine, ids: list[str]) -> dict[str, Any]:
    """The queue's rows of `ids` that are stored, by id."""
    columns = (inv.c.id, inv.c.function, inv.c.principal, inv.c.trigger, inv.c.source, inv.c.type)
    found: dict[str, Any] = {}
    with engine.connect() as conn:
        for at in range(0, len(ids), _CHUNK):
            chunk = ids[at : at + _CHUNK]
            found.update(
                (r.id, r) for r in conn.execute(select(*columns).where(inv.c.id.in_(chunk)))
            )
    return found


class _Noted(NamedTuple):
    """A note as read: its record's actor, target and detail, and the log's size when it
    was taken (None: a note of an older node, which did not hold it)."""

    actor: str | None
    target: str
    detail: dict[str, Any]
    size: int | None


def _parsed(note: Note) -> _Noted | None:
    """A note's [actor, target, detail, size] (or an older node's first three); None if
    it does not read as one."""
    try:
        fields = json.loads(note.text)
    except ValueError:
        return None
    if not isinstance(fields, list) or len(fields) not in (3, 4):
        return None
    actor, target, detail, *rest = fields
    size = rest[0] if rest else None
    ok = isinstance(detail, dict) and isinstance(detail.get("invocation_id"), str)
    sized = size is None or (type(size) is int and size >= 0)
    if not ok or not sized or not isinstance(target, str) or not isinstance(actor, str | None):
        return None
    return _Noted(actor, target, detail, size)


def _in_log(engine: Engine, sizes: dict[str, int]) -> set[str]:
    """Of the invocation ids in `sizes` (each with the log's size when its enqueue was
    noted), those whose `invocation.enqueue` record the log holds after that size, within
    LOOKED_AT records of it."""
    spans: list[list[int]] = []
    for size in sorted(set(sizes.values())):
        if spans and size <= spans[-1][1]:
            spans[-1][1] = size + LOOKED_AT
        else:
            spans.append([size, size + LOOKED_AT])
    found: set[str] = set()
    seq, record = audit_log.c.seq, audit_log.c.record
    with engine.connect() as conn:
        for low, high in spans:
            query = select(seq, record).where(and_(seq > low, seq <= high)).order_by(seq)
            for at, data in conn.execution_options(yield_per=2_000).execute(query):
                if b'"invocation.enqueue"' not in bytes(data):
                    continue  # (most records are not: not parsed)
                try:
                    parsed = json.loads(bytes(data))
                except ValueError:  # not a record (verify says so): not this one's
                    continue
                enqueue = isinstance(parsed, dict) and parsed.get("action") == "invocation.enqueue"
                detail = parsed.get("detail") if enqueue else None
                ident = detail.get("invocation_id") if isinstance(detail, dict) else None
                if isinstance(ident, str) and ident in sizes and at > sizes[ident]:
                    found.add(ident)
    return found


def _recovered(actor: str | None, target: str, detail: dict[str, Any], row: Any) -> AuditEvent:
    """The record of a noted enqueue: as noted, marked `recovered`; what its row holds is
    taken from the row (the call that runs), a note that left it out made whole by it."""
    detail = {**detail, "recovered": True}
    if row is not None:
        detail.pop("note_cut", None)
        actor, target = row.principal or row.trigger, row.function
        detail.update(trigger=row.trigger, source=row.source[:300], type=row.type[:200])
    return AuditEvent(actor or "system", "invocation.enqueue", target, "ok", detail)


async def record_noted(engine: Engine, audit: Recorder, notes: list[Note]) -> None:
    """Append the record of each enqueue a killed node left noted whose row is stored, or
    whose commit returned (its row may have run and been pruned since); durable once this
    returns. A note that does not read is logged, unrecorded
    (the node's own file: only one with write access to its data dir writes another)."""
    parsed = []
    for note in notes:
        read = _parsed(note)
        if read is None:
            log.warning("an enqueue noted in the journal of calls in flight does not read")
        else:
            parsed.append((note, read))
    ids = [read.detail["invocation_id"] for _, read in parsed]
    rows = await asyncio.to_thread(_stored, engine, ids)
    sizes = {r.detail["invocation_id"]: r.size for _, r in parsed if r.size is not None}
    held = await asyncio.to_thread(_in_log, engine, sizes) if sizes else set()
    done = 0
    for note, read in parsed:
        ident = read.detail["invocation_id"]
        row = rows.get(ident)
        if row is None and note.state != QUEUED:
            continue  # its commit never happened: nothing runs, nothing to record
        if ident in held:
            continue  # its record was appended before the kill, its note not yet ended
        await audit.record(_recovered(read.actor, read.target, read.detail, row))
        done += 1
    if done:
        log.warning("appended %d enqueue records a killed node left unwritten", done)
    if held:
        log.info("%d enqueues left noted had their records in the log", len(held))
