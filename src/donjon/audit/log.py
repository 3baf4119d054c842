"""Appending to the audit log, with group commit.

One writer thread owns the appends. Callers on the event loop `await
record(...)`; the writer takes everything queued, appends it in one
transaction, commits, and only then wakes the callers. So a response that
waits for its record is never sent before the record is durable, and calls
in flight together share one commit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, bindparam, desc, insert, select, text

from donjon.audit.chain import GENESIS, chain_hash, head_mac
from donjon.audit.usage import UPSERT_USE, USE_ACTIONS, record_uses
from donjon.errors import Error
from donjon.secret import Secret
from donjon.store.tables import audit_head, audit_log, invocation_logs
from donjon.vault.logseal import LogSealer

__all__ = [
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "CommittedBatch",
    "CommittedRecord",
    "InvocationLog",
]


class AuditError(Error):
    """The audit log could not be written or read."""

    title = "Audit error"


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
_UPDATE_HEAD = text("UPDATE audit_head SET seq = :seq, hash = :hash, mac = :mac WHERE id = 1")
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
    """The single appender of one database's audit log."""

    def __init__(
        self, engine: Engine, mac_key: Secret[bytes], sealer: LogSealer | None = None
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
        self._mac_key = mac_key
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._listeners: list[Listener] = []
        self._seq, self._head = self._load_head()

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` with every batch this log commits from now on."""
        self._listeners.append(listener)

    def _load_head(self) -> tuple[int, bytes]:
        """The signed head; an empty log gets its genesis head, so appends only update it."""
        with self._engine.begin() as conn:
            row = conn.execute(select(audit_head.c.seq, audit_head.c.hash)).first()
            if row is None:
                count = conn.execute(select(audit_log.c.seq).limit(1)).first()
                if count is not None:
                    raise AuditError(
                        "the audit log has records but no signed head: it was tampered with",
                        hint="run `donjon audit verify`",
                    )
                conn.execute(
                    insert(audit_head).values(
                        id=1, seq=0, hash=GENESIS, mac=head_mac(self._mac_key.reveal(), 0, GENESIS)
                    )
                )
                return 0, GENESIS
        return int(row.seq), bytes(row.hash)

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

    def _write(self, items: list[tuple[AuditEvent, InvocationLog | None]]) -> None:
        """Append `items` in one transaction; the head moves only on commit."""
        started = time.perf_counter()
        with self._lock:
            seq, head = self._seq, self._head
            rows: list[Any] = []
            logs: list[Any] = []
            uses: list[dict[str, Any]] = []  # the grant_uses index (audit/usage.py)
            now = time.time()
            ts = round(now, 6)
            for event, log in items:
                seq += 1
                record = self._encode(seq, ts, event)
                head = chain_hash(head, record)
                rows.append((seq, record, head))
                if log is not None:
                    logs.append(self._log_row(log, now))
                if event.action in USE_ACTIONS:
                    uses += record_uses(
                        event.action, event.actor, event.target, event.detail, seq, ts
                    )
            mac = head_mac(self._mac_key.reveal(), seq, head)
            if not self._positional:  # a named-parameter driver (not SQLite's)
                rows = [dict(zip(("seq", "record", "hash"), r, strict=True)) for r in rows]
                logs = [
                    dict(
                        zip(
                            _LOG_COLUMNS,
                            r,
                            strict=True,
                        )
                    )
                    for r in logs
                ]
            with self._engine.begin() as conn:
                # The one hot write: straight to the driver, no per-row SQL compilation.
                conn.exec_driver_sql(self._insert_record, rows)
                if logs:
                    conn.exec_driver_sql(self._insert_log, logs)
                if uses:
                    conn.execute(UPSERT_USE, uses)
                conn.execute(_UPDATE_HEAD, {"seq": seq, "hash": head, "mac": mac})
            first = self._seq + 1
            self._seq, self._head = seq, head
        if self._listeners:
            batch = CommittedBatch(
                tuple(CommittedRecord(first + i, ts, event) for i, (event, _) in enumerate(items)),
                time.perf_counter() - started,
            )
            for listener in self._listeners:
                try:
                    listener(batch)
                except Exception:  # a listener's bug must not fail the append
                    log_.exception("audit listener %r failed", listener)

    def _log_row(self, log: InvocationLog, now: float) -> tuple[Any, ...]:
        head = (log.function, log.version, log.request_id, now, log.outcome)
        report = (log.duration_ms, log.memory_kb)
        if self._sealer is None or not log.output:  # an empty output has nothing to seal
            return (*head, log.output, None, None, None, *report)
        sealed = self._sealer.seal(log.function, log.request_id, log.output)
        return (*head, "", sealed.ciphertext, sealed.wrapped_key, sealed.kek_id, *report)

    def record_now(self, event: AuditEvent, log: InvocationLog | None = None) -> None:
        """Append synchronously (CLI and start-up paths, no event loop)."""
        self._write([(event, log)])

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
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    async def record(self, event: AuditEvent, log: InvocationLog | None = None) -> None:
        """Append and return once the record is durable."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put((event, log, done))
        await done

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
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
            try:
                self._write([(event, log) for event, log, _ in batch])
            except Exception as e:
                # Details (SQL, other callers' records) go to the server log only.
                log_.error("audit append of %d record(s) failed: %s", len(batch), e)
                error = e
            # One wake-up of each event loop per batch, not one per record.
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for _, _, fut in batch:
                by_loop.setdefault(fut.get_loop(), []).append(fut)
            for loop, futures in by_loop.items():
                loop.call_soon_threadsafe(_settle, futures, error)


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
