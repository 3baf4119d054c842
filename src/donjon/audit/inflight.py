"""Calls in flight, noted where the kill of the node cannot take them.

A call's `function.invoke` record is written when the call ends (its outcome, its time,
its log), and its answer goes out only once that record is durable. A node killed in
the middle of a call (SIGKILL, the OOM killer, `gateway/crash_stop.py`) wrote nothing of
it: the function may have run and acted, and the log never said it was called.

So each call is noted as it starts, in a slot of a small file the gateway maps into its
memory (`MAP_SHARED`). The kernel keeps what a process stored in a shared file mapping
when that process is killed (the pages are the file's, in the page cache, written back
to the file in time), so the note outlives the kill of any process of the node; it does
not outlive a power cut (it is not fsynced: that would put a disk write on every call,
and a power cut takes the calls' processes' effects with it as well). The slot is freed
once the call's own record is durable. At its next start, before it serves, the node
appends a `function.invoke` record with outcome `interrupted` for each note left
(`reopen`), then clears the file.

The file's first `_SLOT` bytes say how to read the rest: the wall time less the
monotonic clock's when it was opened, so a slot holds the monotonic time its call
started (the one the call measures its time by: no clock read for the note). A slot
is `_SLOT` bytes: its state (1: a call in flight), that time, and the note: request id,
target (``NAME@VERSION``), trigger and actor, UTF-8, separated by U+001F, padded with
NULs and cut to `_NOTE` bytes (a note that fills its slot is reported as maybe cut).
The state is stored last, in a write of its own, so a live slot's note is whole. The
file grows by doubling when every slot is taken, up to `MAX_SLOTS`: calls in flight are
bounded far below that by the node's admission (concurrency slots, queue bounds), and a
call past it is refused rather than run unnoted. The file's blocks are allocated as it is
made and as it grows (`_allocate`): a full filesystem is a refusal (503), never a SIGBUS
at a note's first write into a page with no block behind it.

An async call's enqueue is noted too (`note`, triggers/queue/noted.py), in a slot of its
own kind: state 2 before its queue row's commit (the commit's fate unknown), 3 once the
commit returned, freed once its `invocation.enqueue` record is durable. `reopen` hands
those notes to its `enqueues` callback, which records each whose row is stored.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import mmap
import os
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from donjon.audit.log import AuditEvent, AuditLog
from donjon.errors import Error
from donjon.store.database import StorageFull

__all__ = [
    "IN_FLIGHT",
    "MAX_SLOTS",
    "NOTE_BYTES",
    "QUEUED",
    "QUEUING",
    "CallsInFlight",
    "InFlightFull",
    "Interrupted",
    "Note",
    "read_notes",
    "read_slots",
    "reopen",
]

#: The journal's file in the data dir.
IN_FLIGHT = "calls-in-flight"

_SLOT = 512
#: A slot: its state, the call's start (monotonic), its note, NUL-padded.
_BODY = struct.Struct("<8xd496s")
_NOTE = 496
#: The most bytes of a note (one longer is cut to it).
NOTE_BYTES = _NOTE
#: The file's first slot: its layout's version, and wall time less monotonic time.
_HEADER = struct.Struct("<8sd")
_MAGIC = b"dj-fly-1"
_FIRST_SLOTS = 256
#: 32 MiB of notes; calls in flight never come near it (see above).
MAX_SLOTS = 1 << 16
_LIVE = 1
#: An enqueue noted before its queue row's commit, and once that commit returned.
QUEUING = 2
QUEUED = 3
#: A note's caller given by its digest (`_digest`).
_DIGEST = "sha256:"
_SEP = "\x1f"  # (between a note's fields; `begin` writes it in its f-string)


class InFlightFull(Error):
    """Every slot of the journal is taken (MAX_SLOTS calls in flight): the call is
    refused (503) rather than run unnoted."""

    title = "Too many calls in flight"
    retry_after_s = 1.0


@dataclass(frozen=True)
class Interrupted:
    """A call a killed node left in flight, as its note says."""

    request_id: str
    target: str
    trigger: str
    actor: str
    started_at: float
    #: Its note filled its slot: its last field may be cut.
    cut: bool

    def event(self) -> AuditEvent:
        """Its record: the call ended without an outcome of its own."""
        detail: dict[str, object] = {
            "request_id": self.request_id,
            "trigger": self.trigger,
            "started_at": round(self.started_at, 3),
            "reason": "the node stopped before the call ended (killed or crashed)",
        }
        if self.cut:
            detail["note_cut"] = True
        if self.actor.startswith(_DIGEST):
            detail["actor_digest"] = "the caller's name, too long for its note, by its SHA-256"
        return AuditEvent(self.actor, "function.invoke", self.target, "interrupted", detail)


class CallsInFlight:
    """The journal of one node's calls in flight (`path`, a file of the data dir)."""

    __slots__ = ("_fd", "_free", "_map", "_slots")

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, 0)  # (what a killed node left is read by `read_notes` first)
            _allocate(fd, _FIRST_SLOTS * _SLOT)
            self._map = mmap.mmap(fd, _FIRST_SLOTS * _SLOT, mmap.MAP_SHARED)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _HEADER.pack_into(self._map, 0, _MAGIC, time.time() - time.perf_counter())
        self._slots = _FIRST_SLOTS
        self._free = list(range(_FIRST_SLOTS - 1, 0, -1))  # a stack: slot 1 first

    def begin(self, request_id: str, target: str, trigger: str, actor: str, started: float) -> int:
        """Note a call as it starts (`started`: `time.perf_counter()`); its slot, for `end`."""
        free = self._free
        slot = free.pop() if free else self._grow()
        offset = slot * _SLOT
        text = f"{request_id}\x1f{target}\x1f{trigger}\x1f{actor}".encode()
        if len(text) > _NOTE:  # (a token's long `sub`): never a cut name, another caller's
            text = f"{request_id}\x1f{target}\x1f{trigger}\x1f{_digest(actor)}".encode()
        _BODY.pack_into(self._map, offset, started, text)
        self._map[offset] = _LIVE  # last: a live slot's note is whole
        return slot

    def note(self, state: int, text: bytes, started: float) -> int:
        """Note something else in flight (`state`: `QUEUING`), `text` cut to its slot; its
        slot, for `mark` and `end`."""
        free = self._free
        slot = free.pop() if free else self._grow()
        offset = slot * _SLOT
        _BODY.pack_into(self._map, offset, started, text)
        self._map[offset] = state  # last: a live slot's note is whole
        return slot

    def mark(self, slot: int, state: int) -> None:
        """A noted slot's new state (`QUEUED`: its commit returned); its note stays."""
        self._map[slot * _SLOT] = state

    def end(self, slot: int) -> None:
        """The call's record is durable: its note is done with."""
        self._map[slot * _SLOT] = 0
        self._free.append(slot)

    def in_flight(self) -> int:
        return self._slots - 1 - len(self._free)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def _grow(self) -> int:
        """A free slot, the file doubled to make it."""
        if self._slots >= MAX_SLOTS:
            raise InFlightFull(
                f"{MAX_SLOTS - 1} calls are in flight on this node, as many as it notes",
                hint="retry after the Retry-After seconds",
            )
        grown = min(self._slots * 2, MAX_SLOTS)
        _allocate(self._fd, grown * _SLOT)  # (StorageFull: this call is refused, 503)
        self._map.resize(grown * _SLOT)  # (zeros: free slots)
        self._free.extend(range(grown - 1, self._slots - 1, -1))
        self._slots = grown
        return self._free.pop()


def _digest(actor: str) -> str:
    """A caller too long for its note (a token's `sub` of up to 256 characters, 4 bytes
    each in UTF-8), as its record names it: its SHA-256, which no principal's name is."""
    return _DIGEST + hashlib.sha256(actor.encode()).hexdigest()


def _allocate(fd: int, size: int) -> None:
    """The file at `fd` `size` bytes long, its blocks allocated now: a page of a shared
    mapping with no block behind it is allocated when it is first written, and on a full
    filesystem that write is a SIGBUS, which kills the node. So the room is taken here,
    where a full filesystem is an error (`StorageFull`) the caller answers."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull("a note of a call in flight (audit/inflight.py)") from e
        raise


@dataclass(frozen=True)
class Note:
    """A slot a killed node left noted: its state, start (wall time) and note's bytes."""

    state: int
    started_at: float
    text: bytes

    @property
    def cut(self) -> bool:
        """Its note filled its slot: its end may be cut."""
        return len(self.text) == _NOTE


def read_slots(path: Path) -> list[Note]:
    """Every slot noted in the journal at `path`, of any state (none if it has none, or
    one of another layout). Read whole before a new journal clears it."""
    try:  # (not through a link; no more than a journal holds)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return []
    with os.fdopen(fd, "rb") as file:
        data = file.read(MAX_SLOTS * _SLOT)
    if len(data) < _SLOT:
        return []
    magic, wall_less_monotonic = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        return []
    found = []
    for offset in range(_SLOT, len(data) - _SLOT + 1, _SLOT):
        state = data[offset]
        if state:
            started, raw = _BODY.unpack_from(data, offset)
            found.append(Note(state, wall_less_monotonic + started, raw.rstrip(b"\0")))
    return found


def _interrupted(note: Note) -> Interrupted:
    fields = note.text.decode("utf-8", "replace").split(_SEP, 3)
    fields += [""] * (4 - len(fields))
    request_id, target, trigger, actor = fields
    return Interrupted(request_id, target, trigger, actor or "system", note.started_at, note.cut)


def read_notes(path: Path) -> list[Interrupted]:
    """The calls a node that ended without its shutdown left in flight, from its journal
    at `path` (none if it has none, or one of another layout)."""
    return [_interrupted(note) for note in read_slots(path) if note.state == _LIVE]


async def reopen(
    path: Path,
    audit: AuditLog,
    enqueues: Callable[[list[Note]], Awaitable[None]] | None = None,
) -> CallsInFlight:
    """The node's journal at `path`, opened anew once each call a killed node left in it
    has its `interrupted` record, durable, and `enqueues` has recorded the enqueues it
    left noted (before the node serves: `Node.start`)."""
    notes = await asyncio.to_thread(read_slots, path)
    for note in notes:
        if note.state == _LIVE:
            await audit.record(_interrupted(note).event())
    queued = [note for note in notes if note.state in (QUEUING, QUEUED)]
    if queued and enqueues is not None:
        await enqueues(queued)
    return await asyncio.to_thread(CallsInFlight, path)
