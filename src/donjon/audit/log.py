"""Appending to the audit log (v2: an RFC 6962 Merkle tree), with group commit.

One writer thread owns the appends. Callers on the event loop `await
record(...)`; the writer takes everything queued, appends it in one
transaction, commits, and only then wakes the callers. So a response that
waits for its record is never sent before the record is durable, and calls
in flight together share one commit.

Record seq s is leaf s - 1 of the tree; its row holds the record's exact bytes
and its leaf hash. The writer keeps the tree's Frontier (audit/frontier.py), so
each commit costs two hashes per record, one root (log n hashes) and one
Ed25519 signature of the new head, written in the same transaction. Checkpoints
(audit/checkpoints.py) are made by their cadence, at `start()` and at `stop()`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, desc, insert, select, text

from donjon.audit.checkpoint import SigningKey
from donjon.audit.checkpoints import CheckpointEntry, Checkpointer, CheckpointFile
from donjon.audit.errors import AuditError
from donjon.audit.sinks import CheckpointSink
from donjon.audit.tree import load_tree, sign_head
from donjon.audit.usage import UPSERT_USE, USE_ACTIONS, record_uses
from donjon.config import AuditSettings
from donjon.secret import Secret
from donjon.store.tables import audit_checkpoints, audit_log, invocation_logs
from donjon.vault.logseal import LogSealer

__all__ = [
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "CommittedBatch",
    "CommittedRecord",
    "InvocationLog",
]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Metadata of one security-relevant event. Never payloads, never secrets."""

    actor: str
    action: str
    target: str
    outcome: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InvocationLog:
    """A function's captured output for one call, written with its audit record."""

    function: str
    version: int
    request_id: str
    outcome: str
    output: str
    #: The call's wall time at the gateway, and the peak memory its worker reported.
    duration_ms: float | None = None
    memory_kb: int | None = None


@dataclass(frozen=True, slots=True)
class CommittedRecord:
    """One record as committed: its place in the log, its time and its event."""

    seq: int
    ts: float
    event: AuditEvent


@dataclass(frozen=True, slots=True)
class CommittedBatch:
    """What one commit appended, handed to the listeners after the commit."""

    records: tuple[CommittedRecord, ...]
    #: Seconds spent encoding, hashing and committing the batch.
    write_seconds: float


#: Called in the writer thread after each commit: must be quick and thread-safe
#: (hand the batch to an event loop with `call_soon_threadsafe`, or bump counters).
Listener = Callable[[CommittedBatch], None]

log_ = logging.getLogger("donjon.audit")

_Item = tuple[AuditEvent, InvocationLog | None, "Any"]
_UPDATE_HEAD = text(
    "UPDATE audit_head SET seq = :seq, hash = :hash, mac = :mac, ts_ms = :ts_ms WHERE id = 1"
)
_INSERT_CHECKPOINT = insert(audit_checkpoints)
#: Canonical JSON: the exact bytes that are hashed are the bytes that are stored.
_CANONICAL = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_RECORD = '{"action":%s,"actor":%s,"detail":%s,"outcome":%s,"seq":%d,"target":%s,"ts":%r}'
_string = json.encoder.encode_basestring_ascii
_LOG_COLUMNS = (
    "function",
    "version",
    "request_id",
    "ts",
    "outcome",
    "output",
    "sealed",
    "wrapped_key",
    "kek_id",
    "duration_ms",
    "memory_kb",
)


class AuditLog:
    """The single appender of one database's audit log.

    `key` signs the head and the checkpoints: the node's `SigningKey` (its own file,
    never derived from the master key), or, for tests and tools, a 32-byte Ed25519
    seed as a `Secret`. `checkpoint_file` and `sinks` receive each checkpoint after
    its commit; `clock` gives the time of records and checkpoints.
    """

    def __init__(
        self,
        engine: Engine,
        key: SigningKey | Secret[bytes],
        sealer: LogSealer | None = None,
        *,
        settings: AuditSettings | None = None,
        checkpoint_file: Path | None = None,
        sinks: Sequence[CheckpointSink] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        #: Seals each invocation log's output before it is stored (None: plaintext, tests only).
        self._sealer = sealer
        dialect = engine.dialect
        self._insert_record = str(
            insert(audit_log)
            .values(seq=bindparam("seq"), record=bindparam("record"), hash=bindparam("hash"))
            .compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        )
        self._insert_log = str(
            insert(invocation_logs)
            .values(
                function=bindparam("function"),
                version=bindparam("version"),
                request_id=bindparam("request_id"),
                ts=bindparam("ts"),
                outcome=bindparam("outcome"),
                output=bindparam("output"),
                sealed=bindparam("sealed"),
                wrapped_key=bindparam("wrapped_key"),
                kek_id=bindparam("kek_id"),
                duration_ms=bindparam("duration_ms"),
                memory_kb=bindparam("memory_kb"),
            )
            .compile(dialect=dialect)
        )
        self._positional = bool(dialect.positional)
        self._key = key if isinstance(key, SigningKey) else SigningKey.from_seed(key.reveal())
        self._clock = clock
        self._checkpointer = Checkpointer(
            self._key,
            settings or AuditSettings(),
            None if checkpoint_file is None else CheckpointFile(checkpoint_file),
            sinks,
            clock,
        )
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._listeners: list[Listener] = []
        state = load_tree(engine, self._key, int(clock() * 1000))
        self._frontier = state.frontier
        if state.last_checkpoint is not None:
            self._checkpointer.last_size, self._checkpointer.last_time = state.last_checkpoint

    @property
    def signing_key(self) -> SigningKey:
        return self._key

    @property
    def size(self) -> int:
        """Records in the log (the tree's size)."""
        return self._frontier.size

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` with every batch this log commits from now on."""
        self._listeners.append(listener)

    # -- writing ---------------------------------------------------------------

    def _encode(self, seq: int, ts: float, event: AuditEvent) -> bytes:
        # The same bytes as _CANONICAL(the whole record), keys in sorted order,
        # with the fixed part as a template: a third of the time per record.
        return (
            _RECORD
            % (
                _string(event.action),
                _string(event.actor),
                _CANONICAL(event.detail),
                _string(event.outcome),
                int(seq),
                _string(event.target),
                float(ts),
            )
        ).encode()

    def _write(
        self, items: list[tuple[AuditEvent, InvocationLog | None]]
    ) -> CheckpointEntry | None:
        """Append `items` in one transaction; the frontier and head move only on commit.

        Returns the checkpoint committed with them, for the caller to `publish` (the
        writer thread does so once it has woken the batch's callers)."""
        started = time.perf_counter()
        with self._lock:
            frontier = self._frontier.copy()
            first = seq = frontier.size
            rows: list[Any] = []
            logs: list[Any] = []
            uses: list[dict[str, Any]] = []  # the grant_uses index (audit/usage.py)
            now = self._clock()
            ts = round(now, 6)
            for event, log in items:
                seq += 1
                record = self._encode(seq, ts, event)
                leaf = sha256(b"\x00" + record).digest()
                frontier.append(leaf)
                rows.append((seq, record, leaf))
                if log is not None:
                    logs.append(self._log_row(log, now))
                if event.action in USE_ACTIONS:
                    uses += record_uses(
                        event.action, event.actor, event.target, event.detail, seq, ts
                    )
            root = frontier.root()
            head = sign_head(self._key, seq, root, int(now * 1000))
            checkpoint = (
                self._checkpointer.make(seq, root, now)
                if self._checkpointer.due(seq, now)
                else None
            )
            if not self._positional:  # a named-parameter driver (not SQLite's)
                rows = [dict(zip(("seq", "record", "hash"), r, strict=True)) for r in rows]
                logs = [dict(zip(_LOG_COLUMNS, r, strict=True)) for r in logs]
            with self._engine.begin() as conn:
                # The one hot write: straight to the driver, no per-row SQL compilation.
                conn.exec_driver_sql(self._insert_record, rows)
                if logs:
                    conn.exec_driver_sql(self._insert_log, logs)
                if uses:
                    conn.execute(UPSERT_USE, uses)
                conn.execute(
                    _UPDATE_HEAD,
                    {"seq": seq, "hash": root, "mac": head.signature, "ts_ms": head.ts_ms},
                )
                if checkpoint is not None:
                    conn.execute(_INSERT_CHECKPOINT, _checkpoint_row(checkpoint))
            self._frontier = frontier
            if checkpoint is not None:
                self._checkpointer.committed(checkpoint)
        if self._listeners:
            batch = CommittedBatch(
                tuple(
                    CommittedRecord(first + 1 + i, ts, event) for i, (event, _) in enumerate(items)
                ),
                time.perf_counter() - started,
            )
            for listener in self._listeners:
                try:
                    listener(batch)
                except Exception:  # a listener's bug must not fail the append
                    log_.exception("audit listener %r failed", listener)
        return checkpoint

    def checkpoint(self, *, force: bool = True) -> CheckpointEntry | None:
        """Make a checkpoint of the current tree now (`force`) or if its cadence says so;
        None when the newest checkpoint already covers every record."""
        with self._lock:
            now = self._clock()
            size = self._frontier.size
            if size == self._checkpointer.last_size:
                return None
            if not force and not self._checkpointer.due(size, now):
                return None
            entry = self._checkpointer.make(size, self._frontier.root(), now)
            with self._engine.begin() as conn:
                conn.execute(_INSERT_CHECKPOINT, _checkpoint_row(entry))
            self._checkpointer.committed(entry)
        self._checkpointer.publish(entry)
        return entry

    def _log_row(self, log: InvocationLog, now: float) -> tuple[Any, ...]:
        head = (log.function, log.version, log.request_id, now, log.outcome)
        report = (log.duration_ms, log.memory_kb)
        if self._sealer is None or not log.output:  # an empty output has nothing to seal
            return (*head, log.output, None, None, None, *report)
        sealed = self._sealer.seal(log.function, log.request_id, log.output)
        return (*head, "", sealed.ciphertext, sealed.wrapped_key, sealed.kek_id, *report)

    def record_now(self, event: AuditEvent, log: InvocationLog | None = None) -> None:
        """Append synchronously (CLI and start-up paths, no event loop)."""
        checkpoint = self._write([(event, log)])
        if checkpoint is not None:
            self._checkpointer.publish(checkpoint)

    # -- reading ----------------------------------------------------------------

    def tail(self, n: int) -> list[Any]:
        """The last `n` records (parsed), oldest first. Blocking: off the event loop."""
        query = select(audit_log.c.record).order_by(desc(audit_log.c.seq)).limit(n)
        with self._engine.connect() as conn:
            records = [json.loads(bytes(r)) for r in conn.execute(query).scalars()]
        records.reverse()
        return records

    # -- group commit for the event loop ----------------------------------------

    def start(self) -> None:
        """Start the writer thread, with a checkpoint of the log as it is."""
        if self._thread is None:
            self.checkpoint()
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the writer (what is queued is written), then checkpoint what it wrote."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self.checkpoint()
        except Exception as e:  # the records are durable; only the last checkpoint is lost
            log_.error("audit checkpoint at shutdown failed: %s", e)
        self._checkpointer.close()

    async def record(self, event: AuditEvent, log: InvocationLog | None = None) -> None:
        """Append and return once the record is durable."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put((event, log, done))
        await done

    def _next(self) -> tuple[bool, _Item | None]:
        """(True, the next queued item), or (False, None) when the time cadence came
        first (and made its checkpoint)."""
        wait = self._checkpointer.seconds_until_due(self._frontier.size, self._clock())
        try:
            return True, self._queue.get(timeout=None if wait is None else max(wait, 0.05))
        except queue.Empty:
            try:
                self.checkpoint(force=False)
            except Exception as e:  # retried at the next wake-up
                log_.error("audit checkpoint failed: %s", e)
            return False, None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            got, first = self._next()
            if not got:
                continue
            if first is None:
                break
            batch: list[_Item] = [first]
            while len(batch) < 4096:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            error: BaseException | None = None
            checkpoint = None
            try:
                checkpoint = self._write([(event, log) for event, log, _ in batch])
            except Exception as e:
                # Details (SQL, other callers' records) go to the server log only.
                log_.error("audit append of %d record(s) failed: %s", len(batch), e)
                error = e
            # One wake-up of each event loop per batch, not one per record.
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for _, _, fut in batch:
                by_loop.setdefault(fut.get_loop(), []).append(fut)
            for loop, futures in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, futures, error)
                except RuntimeError:  # that loop closed meanwhile: nobody waits any more
                    log_.debug("audit: %d waiter(s) gone with their loop", len(futures))
            if checkpoint is not None:  # its fsync is not on the callers' path
                self._checkpointer.publish(checkpoint)


def _checkpoint_row(entry: CheckpointEntry) -> dict[str, Any]:
    return {"size": entry.size, "root": entry.root, "ts": entry.ts, "note": entry.note}


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for fut in futures:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(
                AuditError(
                    "the audit log could not be written, so the request was not completed",
                    hint="the server log says why",
                )
            )
