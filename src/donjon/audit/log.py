"""Appending to the audit log (v2: an RFC 6962 Merkle tree), with group commit.

One writer owns the appends: the node's runs in a process of its own
(`start(process=True)`: audit/remote.py, audit/writer.py, which runs this
class's `_append`); tests and tools keep a writer thread (`start()`), below.
In the thread's mode, one writer thread owns the appends. Callers on the event loop `await
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, desc, insert, select

from donjon.audit.checkpoint import SigningKey
from donjon.audit.checkpoints import CheckpointEntry, Checkpointer, CheckpointFile
from donjon.audit.entry import Entry, encode_entry, fill, ts_tail
from donjon.audit.errors import AuditError
from donjon.audit.events import (
    AuditEvent,
    CommittedBatch,
    CommittedRecord,
    InvocationLog,
    Listener,
)
from donjon.audit.frontier import Frontier
from donjon.audit.rawsql import RawStatements
from donjon.audit.remote import RemoteWriter, WriterConfig, WriterState
from donjon.audit.rows import fill_rows
from donjon.audit.sinks import CheckpointSink
from donjon.audit.tree import load_tree, sign_head
from donjon.config import AuditSettings
from donjon.secret import Secret
from donjon.store.tables import audit_checkpoints, audit_log
from donjon.vault.logseal import LogSealer

__all__ = [
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "CommittedBatch",
    "CommittedRecord",
    "InvocationLog",
]


log_ = logging.getLogger("donjon.audit")


def _writes_here() -> None:
    """`AuditLog.require_writer` with no writer process: this process writes (a thread)."""


_Item = tuple[AuditEvent, InvocationLog | None, "Any"]
_INSERT_CHECKPOINT = insert(audit_checkpoints)


@dataclass(frozen=True, slots=True)
class Prepared:
    """Records given their seqs, time and rows, not yet stored (`AuditLog.prepare`)."""

    first: int
    ts: float
    now: float
    #: How many records.
    count: int
    #: seq, record, hash of each record, flat (audit/rows.py).
    params: list[Any]
    logs: list[tuple[Any, ...]]
    uses: list[tuple[Any, ...]]
    #: The tree with these records (and every one prepared before them).
    frontier: Frontier


@dataclass(frozen=True, slots=True)
class _Appended:
    first: int
    ts: float
    seconds: float
    checkpoint: CheckpointEntry | None


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
        self._sql = RawStatements(engine)
        self._raw: Any = None
        self._settings = settings or AuditSettings()
        self._checkpoint_path = checkpoint_file
        #: The writer process, when `start(process=True)` made one (audit/remote.py).
        self._remote: RemoteWriter | None = None
        #: Raises `AuditUnavailable` if this log's writer process runs no more (it died and
        #: a new one is starting, or its restarts stopped): the node refuses a call before
        #: it runs rather than run what it cannot record. The writer's own `require` while
        #: it is `_remote` (no call of the log's own: asked twice a call), else a no-op.
        self.require_writer: Callable[[], None] = _writes_here
        self._early: RemoteWriter | None = None  # `prestart` began this one
        self._key = key if isinstance(key, SigningKey) else SigningKey.from_seed(key.reveal())
        self._clock = clock
        self._checkpointer = Checkpointer(
            self._key,
            self._settings,
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
        if self._remote is not None:
            return self._remote.size
        return self._frontier.size

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` with every batch this log commits from now on."""
        self._listeners.append(listener)

    # -- writing ---------------------------------------------------------------

    def _encode(self, seq: int, ts: float, event: AuditEvent) -> bytes:
        """The canonical bytes of `event` as record `seq` at `ts` (audit/entry.py)."""
        return fill(encode_entry(event).template, seq, ts_tail(round(ts, 6)))

    def _append(self, entries: Sequence[Entry]) -> _Appended:
        """Append `entries` in one transaction; the frontier and head move only on commit.

        The one place records are written in this process's modes (the writer thread,
        `record_now`, tools); the writer process runs `prepare` and `store` itself, in
        two threads (audit/pipeline.py). Returns the first seq, the records' time, the
        seconds it took and the checkpoint committed with them, for the caller to
        `publish` once it has woken the batch's callers."""
        started = time.perf_counter()
        with self._lock:
            chunk = self.prepare(entries, self._frontier.copy())
            checkpoint = self.store([chunk])
        return _Appended(chunk.first, chunk.ts, time.perf_counter() - started, checkpoint)

    def prepare(self, entries: Sequence[Entry | bytes], frontier: Frontier) -> Prepared:
        """The rows of `entries` (each an entry, its bare template or its wire form,
        audit/rows.py) as the records after `frontier`, which is extended by their
        leaf hashes (no database work: a later `store` writes them)."""
        first = frontier.size
        now = self._clock()
        ts = round(now, 6)
        rows = fill_rows(entries, first, ts_tail(ts))
        logs: list[tuple[Any, ...]] = []
        uses: list[tuple[Any, ...]] = []  # the grant_uses index (audit/usage.py)
        for seq, entry in rows.extras:
            if entry.log is not None:
                logs.append(self._log_row(entry.log, now))
            for use in entry.uses:
                uses.append((*use, seq, ts))
        frontier.extend(rows.hashes)
        return Prepared(first + 1, ts, now, rows.count, rows.params, logs, uses, frontier.copy())

    def store(self, chunks: Sequence[Prepared]) -> CheckpointEntry | None:
        """Write prepared `chunks` (each following the one before, the first following
        the committed tree) with the signed head of the last and a checkpoint if due,
        in one transaction; only then move the tree. Returns the checkpoint. On
        failure nothing of them stays."""
        last = chunks[-1]
        if chunks[0].first != self._frontier.size + 1:
            raise AuditError(
                f"records prepared from seq {chunks[0].first} do not follow the log's "
                f"{self._frontier.size} records",
                hint="a Donjon bug: prepared records are stored in order",
            )
        frontier, seq, now = last.frontier, last.frontier.size, last.now
        root = frontier.root()
        head_ = sign_head(self._key, seq, root, int(now * 1000))
        checkpoint = (
            self._checkpointer.make(seq, root, now) if self._checkpointer.due(seq, now) else None
        )
        raw = self._raw if self._raw is not None else self._engine.raw_connection()
        # The driver's connection itself: the pool's proxy finds `commit` only through
        # its __getattr__, after a failed lookup (an AttributeError made and dropped).
        driver = raw.dbapi_connection
        try:
            for chunk in chunks:
                self._sql.insert(driver, chunk.params, chunk.logs, chunk.uses)
            self._sql.finish(
                driver,
                # bytearrays, as the records' (audit/rows.py): sqlite3 binds one directly,
                # where bytes first fail a formatted adapter lookup. The same BLOBs.
                (seq, bytearray(root), bytearray(head_.signature), head_.ts_ms),
                None if checkpoint is None else _checkpoint_row(checkpoint),
            )
        except BaseException:
            raw.rollback()
            raise
        finally:
            if raw is not self._raw:
                raw.close()
        self._frontier = frontier
        if checkpoint is not None:
            self._checkpointer.committed(checkpoint)
        return checkpoint

    @property
    def writer_state(self) -> WriterState:
        """Whether records can be appended now: "ok", "restarting" (the writer process
        died and a new one is starting), "failed" (its restarts stopped: the node must be
        restarted) or "stopped" (no writer runs: not started, or stopped)."""
        remote = self._remote
        if remote is not None and not remote.stopped:
            return remote.state
        thread = self._thread
        return "ok" if thread is not None and thread.is_alive() else "stopped"

    def hold_connection(self) -> None:
        """Keep one DB-API connection for every append (the writer process's)."""
        if self._raw is None:
            self._raw = self._engine.raw_connection()

    def _write(
        self, items: list[tuple[AuditEvent, InvocationLog | None]]
    ) -> CheckpointEntry | None:
        """Append `items` in one transaction and tell the listeners (this process's mode)."""
        self._in_process("_write")
        done = self._append([encode_entry(event, log) for event, log in items])
        if self._listeners:
            batch = CommittedBatch(
                tuple(
                    CommittedRecord(done.first + i, done.ts, event)
                    for i, (event, _) in enumerate(items)
                ),
                done.seconds,
            )
            for listener in self._listeners:
                try:
                    listener(batch)
                except Exception:  # a listener's bug must not fail the append
                    log_.exception("audit listener %r failed", listener)
        return done.checkpoint

    def checkpoint(self, *, force: bool = True) -> CheckpointEntry | None:
        """Make a checkpoint of the current tree now (`force`) or if its cadence says so;
        None when the newest checkpoint already covers every record."""
        self._in_process("checkpoint")
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

    def _in_process(self, what: str) -> None:
        """Refuse a write here while the writer process runs; after it stopped, read the
        tree it left (records, head, checkpoints) before writing here again."""
        remote = self._remote
        if remote is None:
            return
        if not remote.stopped:
            raise AuditError(
                f"{what}() writes in this process, but this log's writer is its own process",
                hint="append with `await record(...)`; the writer process checkpoints itself",
            )
        state = load_tree(self._engine, self._key, int(self._clock() * 1000))
        self._frontier = state.frontier
        if state.last_checkpoint is not None:
            self._checkpointer.last_size, self._checkpointer.last_time = state.last_checkpoint
        self._remote = None
        self.require_writer = _writes_here

    def start(self, *, process: bool = False) -> None:
        """Start the writer, with a checkpoint of the log as it is: a thread of this
        process, or (`process`, what the node does) a process of its own that holds the
        database connection, the tree and the keys (audit/remote.py, audit/writer.py)."""
        if self._thread is not None or (self._remote is not None and not self._remote.stopped):
            return
        if process:
            remote = self._early or RemoteWriter(self._writer_config(), self._listeners)
            self._early = None
            remote.start()
            self._remote = remote
            self.require_writer = remote.require
            return
        self.checkpoint()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def prestart(self) -> None:
        """Begin starting the writer process now (a thread waits for it), for a later
        `start(process=True)`: the node calls this first thing in its start, so the
        writer's interpreter start and the log's opening overlap the rest. Nothing may
        append between the two."""
        if self._early is None and self._remote is None:
            self._early = RemoteWriter(self._writer_config(), self._listeners)
            self._early.prestart()

    def _writer_config(self) -> WriterConfig:
        return WriterConfig(
            database_url=self._engine.url.render_as_string(hide_password=False),
            seed=self._key.seed(),
            log_kek=None if self._sealer is None else self._sealer.kek,
            settings=self._settings,
            checkpoint_file=self._checkpoint_path,
        )

    def stop(self) -> None:
        """Stop the writer (what is queued is written), then checkpoint what it wrote."""
        if self._early is not None:  # begun by prestart(), never started
            self._early.discard()
            self._early = None
        if self._remote is not None and not self._remote.stopped:
            self._remote.stop()  # the writer process checkpoints before it exits
            self._checkpointer.close()
            return
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self.checkpoint()
        except Exception as e:  # the records are durable; only the last checkpoint is lost
            log_.error("audit checkpoint at shutdown failed: %s", e)
        self._checkpointer.close()

    def record(self, event: AuditEvent, log: InvocationLog | None = None) -> Awaitable[None]:
        """Append; awaiting the result returns once the record is durable (a future,
        not a coroutine: one frame less per record on the hot path). A record the
        writer refuses raises AuditError when awaited."""
        if self._remote is not None:
            try:
                return self._remote.submit(event, log)
            except AuditError as e:  # refused: raised when awaited, as from a coroutine
                refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                refused.set_exception(e)
                return refused
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put((event, log, done))
        return done

    def landed(self, event: AuditEvent) -> bool:
        """`event` raised AuditError as its writer process died, yet that writer had
        committed it (audit/remote.py): appending it again would repeat it."""
        return self._remote is not None and self._remote.lost_records.landed(event)

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
