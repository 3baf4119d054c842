"""Reading what proofs, exports and paged tails need from the audit tables.

Records are append-only and a checkpoint, once written, never changes, so
each read here is a short query of its own: a reader that fixes its upper
bound (a checkpoint's size) first sees the same rows however long it takes,
with no transaction held across a streamed response. Blocking: call it off
the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from sqlalchemy import Engine, select, text

from donjon import boundedjson
from donjon.audit import merkle
from donjon.audit.checkpoint import Checkpoint, VerifierKey
from donjon.audit.folding import Folded, LeafFold
from donjon.audit.merkle import HASH_SIZE
from donjon.audit.proofs import (
    LogTampered,
    ProofError,
    ProofInvalid,
    consistency_document,
    inclusion_document,
    open_note,
)
from donjon.store.tables import audit_log

__all__ = [
    "SCAN",
    "CheckpointNotFound",
    "Prover",
    "StoredCheckpoint",
    "kept_records_before",
    "records_before",
]

#: Rows per query when walking the log.
PAGE = 5000
#: The most records one filtered page reads (`kept_records_before`).
SCAN = 50_000


class CheckpointNotFound(ProofError):
    """No checkpoint of the asked size, or none covering the asked record."""

    title = "Not found"


@dataclass(frozen=True)
class StoredCheckpoint:
    checkpoint: Checkpoint
    note: str
    ts: float

    def view(self) -> dict[str, Any]:
        cp = self.checkpoint
        return {"size": cp.size, "root": cp.root.hex(), "ts": self.ts, "note": self.note}


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def records_before(engine: Engine, before: int | None, n: int) -> list[dict[str, Any]]:
    """The newest `n` records older than `before` (all, if None), oldest first."""
    query = "SELECT seq, record FROM audit_log"
    params: dict[str, Any] = {"n": n}
    if before is not None:
        query += " WHERE seq < :before"
        params["before"] = before
    query += " ORDER BY seq DESC LIMIT :n"
    with engine.connect() as conn:
        rows = conn.execute(text(query), params).all()
    return [_readable(int(seq), _bytes(r)) for seq, r in reversed(rows)]


def kept_records_before(
    engine: Engine,
    before: int | None,
    n: int,
    keep: Callable[[Mapping[str, Any]], bool],
    scan: int = SCAN,
) -> tuple[list[dict[str, Any]], int | None]:
    """The newest `n` records older than `before` that `keep` keeps, oldest first, and the
    seq to page on from (`before=` it) when `scan` records were read before `n` were kept
    (None: the page reached the first record or holds `n`)."""
    kept: list[dict[str, Any]] = []
    position = before
    read = 0
    while len(kept) < n and read < scan:
        query = select(audit_log.c.seq, audit_log.c.record).order_by(audit_log.c.seq.desc())
        if position is not None:
            query = query.where(audit_log.c.seq < position)
        with engine.connect() as conn:
            rows = conn.execute(query.limit(min(PAGE, scan - read))).all()
        if not rows:
            return list(reversed(kept)), None
        for seq, raw in rows:
            position, read = int(seq), read + 1
            record = _readable(position, _bytes(raw))
            if keep(record):
                kept.append(record)
                if len(kept) == n:
                    break
    more = len(kept) < n and position is not None and position > 1
    return list(reversed(kept)), position if more else None


def _readable(seq: int, raw: bytes) -> dict[str, Any]:
    """The record as stored; a row that holds no record (edited: `donjon audit verify` says
    more) is shown as an unreadable record of its seq, not a failed page."""
    try:
        record = boundedjson.loads(raw, finite=True)
    except (ValueError, boundedjson.JSONTooDeep):
        record = None
    if _is_record(record):
        return record
    shown = dict.fromkeys(("actor", "target", "outcome"), "")
    return {**shown, "seq": seq, "ts": 0, "action": "(unreadable)", "detail": {}}


def _is_record(value: object) -> TypeGuard[dict[str, Any]]:
    """Whether `value` has a record's fields, of their types (audit/entry.py writes them)."""
    if not isinstance(value, dict):
        return False
    seq, ts = value.get("seq"), value.get("ts")
    return (
        type(seq) is int
        and seq >= 1
        and isinstance(ts, int | float)
        and not isinstance(ts, bool)
        and -1e15 < ts < 1e15
        and all(type(value.get(k)) is str for k in ("actor", "action", "target", "outcome"))
        and type(value.get("detail")) is dict
    )


def _damaged(message: str) -> LogTampered:
    return LogTampered(message, hint="the database was altered: run `donjon audit verify`")


class Prover:
    """Proofs and pages over one database's audit log, checked against `key`."""

    def __init__(self, engine: Engine, key: VerifierKey) -> None:
        self._engine = engine
        self.key = key

    # -- checkpoints --------------------------------------------------------------

    def _stored(self, row: Any) -> StoredCheckpoint:
        note = str(row.note)
        try:
            checkpoint = open_note(note, self.key, f"stored checkpoint {row.size}")
        except ProofInvalid as e:  # the node wrote it signed: the row was altered since
            raise _damaged(e.message) from e
        if str(checkpoint.size) != str(row.size):
            raise _damaged(
                f"checkpoint row {row.size} holds the signed note of size {checkpoint.size}"
            )
        try:
            ts = float(row.ts)
        except (TypeError, ValueError):
            raise _damaged(f"checkpoint row {row.size}'s time is not a number") from None
        return StoredCheckpoint(checkpoint, note, ts)

    def checkpoints(self, n: int, before: int | None = None) -> list[StoredCheckpoint]:
        """The newest `n` checkpoints (smaller than `before`), oldest first."""
        query = "SELECT size, ts, note FROM audit_checkpoints"
        params: dict[str, Any] = {"n": n}
        if before is not None:
            query += " WHERE size < :before"
            params["before"] = before
        query += " ORDER BY size DESC LIMIT :n"
        with self._engine.connect() as conn:
            rows = conn.execute(text(query), params).all()
        return [self._stored(r) for r in reversed(rows)]

    def checkpoints_within(self, first: int, last: int) -> Iterator[StoredCheckpoint]:
        """The checkpoints of sizes first..last, oldest first, read a page at a time."""
        query = (
            "SELECT size, ts, note FROM audit_checkpoints"
            " WHERE size >= :first AND size <= :last ORDER BY size LIMIT :n"
        )
        while first <= last:
            with self._engine.connect() as conn:
                rows = conn.execute(text(query), {"first": first, "last": last, "n": 1000}).all()
            if not rows:
                return
            for row in rows:
                stored = self._stored(row)
                yield stored
            first = stored.checkpoint.size + 1

    def checkpoint(self, size: int) -> StoredCheckpoint:
        """The checkpoint of exactly `size` records."""
        with self._engine.connect() as conn:
            row = conn.execute(
                text("SELECT size, ts, note FROM audit_checkpoints WHERE size = :s"), {"s": size}
            ).first()
        if row is None:
            raise CheckpointNotFound(
                f"no checkpoint of size {size}",
                hint="`donjon audit checkpoints` (GET /v1/audit/checkpoints) lists the sizes",
            )
        return self._stored(row)

    def newest_covering(self, seq: int) -> StoredCheckpoint:
        """The newest checkpoint, if it covers record `seq`."""
        newest = self.checkpoints(1)
        if not newest or newest[0].checkpoint.size < seq:
            with self._engine.connect() as conn:
                size = conn.execute(text("SELECT MAX(seq) FROM audit_log")).scalar() or 0
            if seq > size:
                raise CheckpointNotFound(
                    f"no record {seq}: the log holds {size} records",
                    hint="`donjon audit tail` shows the newest records and their seqs",
                )
            raise CheckpointNotFound(
                f"no checkpoint covers record {seq} yet",
                hint="the next checkpoint is made within the checkpoint interval; try again then",
            )
        return newest[0]

    # -- leaves and records ---------------------------------------------------------

    def fold(self, size: int, ranges: Sequence[tuple[int, int]] = ()) -> Folded:
        """The stored leaf hashes of records 1..size folded, page by page, into their tree
        and the tree hashes of `ranges` (leaf indexes, audit/folding.py): one page of
        leaves held at a time, however long the log."""
        fold = LeafFold(ranges)
        expected = 1
        for page in self._pages("hash", 1, size):
            leaves = []
            for seq, raw in page:
                leaf = _bytes(raw)
                if int(seq) != expected:
                    break
                if len(leaf) != HASH_SIZE:
                    raise _damaged(f"record {seq}'s stored leaf hash is not a SHA-256 hash")
                leaves.append(leaf)
                expected += 1
            fold.add(leaves)
            if len(leaves) < len(page):
                break
        if expected != size + 1:
            raise _damaged(f"records 1..{size} are not all in the log (record {expected} is not)")
        return fold.done()

    def records(self, first: int, last: int) -> Iterator[list[tuple[int, bytes]]]:
        """Records first..last as pages of (seq, record bytes)."""
        for page in self._pages("record", first, last):
            yield [(int(s), _bytes(r)) for s, r in page]

    def _pages(self, column: str, first: int, last: int) -> Iterator[list[Any]]:
        seq = audit_log.c.seq
        start = first
        while start <= last:
            query = (
                select(seq, audit_log.c[column])
                .where(seq >= start, seq <= last)
                .order_by(seq)
                .limit(PAGE)
            )
            with self._engine.connect() as conn:
                page = list(conn.execute(query).all())
            if not page:
                return
            yield page
            start = int(page[-1][0]) + 1

    def record(self, seq: int) -> bytes:
        with self._engine.connect() as conn:
            row = conn.execute(
                text("SELECT record FROM audit_log WHERE seq = :s"), {"s": seq}
            ).first()
        if row is None:
            raise CheckpointNotFound(f"no audit record {seq}", hint="seqs start at 1")
        return _bytes(row[0])

    # -- proofs -----------------------------------------------------------------------

    def prove(self, seq: int, size: int | None = None) -> dict[str, Any]:
        """An inclusion proof of record `seq` against checkpoint `size` (default: the newest)."""
        if seq < 1:
            raise CheckpointNotFound(f"no audit record {seq}", hint="seqs start at 1")
        stored = self.newest_covering(seq) if size is None else self.checkpoint(size)
        cp = stored.checkpoint
        if seq > cp.size:
            raise CheckpointNotFound(
                f"checkpoint {cp.size} does not cover record {seq}",
                hint="name a checkpoint at least as large as the record's seq",
            )
        folded = self.fold(cp.size, [(seq - 1, seq), *merkle.inclusion_ranges(cp.size, seq - 1)])
        leaf, path = folded.roots[0], folded.roots[1:]
        root = folded.frontier.root()
        return inclusion_document(seq, self.record(seq), leaf, root, path, cp, stored.note)

    def consistency(self, old: int, new: int) -> dict[str, Any]:
        """A consistency proof between the checkpoints of sizes `old` and `new`."""
        if old > new:
            raise ProofError(
                f"the old size {old} is larger than the new size {new}",
                hint="name the older (smaller) checkpoint first",
            )
        older, newer = self.checkpoint(old), self.checkpoint(new)
        folded = self.fold(new, [(0, old), *merkle.consistency_ranges(new, old)])
        roots = (folded.roots[0], folded.frontier.root())
        return consistency_document(
            roots, folded.roots[1:], older.checkpoint, older.note, newer.checkpoint, newer.note
        )
