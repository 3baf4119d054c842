"""The node's side of the audit writer process.

`AuditLog.start(process=True)` (what `donjon serve` does) starts a child
process (`python -m donjon.audit.writer`) that owns the appends: its own
database connection, the tree's frontier, the signing key, the checkpointer
and the sinks. The node keeps the `AuditLog` API and its promises:

- `record()` encodes the record's fixed part on the loop (audit/entry.py),
  queues it, and one frame per loop iteration carries every record queued in
  it; the future resolves when the writer says the batch is committed.
- Group commit: the writer commits everything that came while its previous
  transaction committed (audit/pipeline.py); one COMMITTED answer per frame's
  worth of records, all of a transaction's answers in one write: one wake-up
  of the loop.
- The listeners get each `CommittedBatch` on the loop's thread, in commit
  order, before the batch's callers resume (they are woken after).
- A writer that dies fails closed: every record in flight and every record
  made until a new writer is ready raises `AuditError`. The node then starts a
  new writer, which reads the tree again and checks it against its signed head
  and the checkpoint file, as at start (at most RESTARTS times a minute; past
  that the node stays closed and says so in its log). Which of the records in
  flight the dead writer had committed is known once the new one has read the log
  (audit/lost.py): a caller that appends one again asks `AuditLog.landed` first.

The keys reach the child over the socketpair (the signing key's seed and the
invocation logs' subkey, never the master key); not argv, env or a file. The
writer exits when the socket closes (the node stopped or died) or when its
parent is gone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import select
import socket
import subprocess  # nosec B404  (our own interpreter, fixed argv, no shell)
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Literal

from donjon.audit.entry import to_wire
from donjon.audit.errors import AuditError, AuditStorageFull, AuditUnavailable
from donjon.audit.events import CommittedBatch, CommittedRecord
from donjon.audit.lost import LostRecords
from donjon.audit.spawn import Spawned, WriterConfig, reap, spawn
from donjon.audit.wire import (
    COMMITTED,
    COMMITTED_BODY,
    COUNT,
    FAILED,
    RECORDS,
    STORAGE_FULL,
    FrameReader,
    frame,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from donjon.audit.events import AuditEvent, InvocationLog

__all__ = ["RESTARTS", "RemoteWriter", "WriterConfig", "WriterState"]

#: What `RemoteWriter.state` and `AuditLog.writer_state` say of the log's writer.
WriterState = Literal["ok", "restarting", "failed", "stopped"]

log_ = logging.getLogger("donjon.audit")

#: Restarts of a writer that died, at most, in any minute.
RESTARTS = 5
#: Retry-After of a call refused once the restarts stopped: a supervisor restarting the
#: node on its failed liveness probe (readiness.py) takes about this long.
GIVEN_UP_RETRY_S = 30
#: Seconds for a writer to open the log at start (it reads every leaf hash once).
START_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 60.0
#: Records queued in one loop iteration that are sent at once, before it ends: the
#: writer works on them while the loop encodes the rest (the two overlap).
FLUSH_AT = 64


def _unavailable(given_up: bool) -> AuditUnavailable:
    """No writer runs, so a call is refused before it is admitted; a new writer starts by
    itself within about a second, unless its restarts were `given_up` (the node must be
    restarted: Retry-After is then `GIVEN_UP_RETRY_S`). Why the writer is down is in the
    server's log (said when it died), not in this answer, which a public trigger's
    anonymous caller may get."""
    error = AuditUnavailable(
        "the audit log is unavailable: the call was refused before it ran",
        hint="retry after the Retry-After seconds; if it lasts, the node needs a restart "
        "(its GET /healthz then answers 503)",
    )
    if given_up:
        error.retry_after_s = GIVEN_UP_RETRY_S
    return error


def _failure(reason: str) -> AuditError:
    if reason == STORAGE_FULL:
        return AuditStorageFull(
            "the node's storage is full: the audit record could not be written, "
            "so the request was not completed",
            hint="free space on the filesystem of the node's data dir (or its database); "
            "the node recovers by itself, without a restart",
        )
    return AuditError(
        "the audit log could not be written, so the request was not completed",
        hint=f"the server log says why ({reason})",
    )


class RemoteWriter:
    """The node's end of one writer process at a time (a new one after a death)."""

    def __init__(self, config: WriterConfig, listeners: list[Callable[[CommittedBatch], None]]):
        self._config = config
        self._listeners = listeners
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The thread that runs `_loop` (set with it).
        self._thread = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader = FrameReader()
        self._pending: deque[tuple[AuditEvent, asyncio.Future[None]]] = deque()
        self._chunks: list[bytes] = []
        self._flush_due = False
        self._out = bytearray()
        self._writing = False
        self._stopping = False
        #: Why records are refused now (the writer died), or None.
        self._down: str | None = None
        #: Restarts stopped (too many deaths in a minute): refused until the node restarts.
        self._given_up = False
        self._restarts: deque[float] = deque()
        self._early: concurrent.futures.Future[Spawned] | None = None
        #: The log's size as the writer last reported it.
        self.size = 0
        #: The records in flight at the last writer's death (audit/lost.py).
        self.lost_records = LostRecords()

    @property
    def stopped(self) -> bool:
        return self._stopping

    @property
    def state(self) -> WriterState:
        """ "ok" (records are appended), "restarting" (a writer died; a new one is
        starting) or "failed" (restarts stopped: only the node's restart ends it)."""
        if self._given_up:
            return "failed"
        if self._sock is not None and self._down is None:
            return "ok"
        return "restarting"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    # -- the process -----------------------------------------------------------

    def start(self) -> None:
        """Start the writer and wait until it has opened the log (on the loop's thread)."""
        try:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.get_ident()
        except RuntimeError:
            raise AuditError(
                "the audit writer process must be started from a running event loop",
                hint="call AuditLog.start(process=True) from the node's loop",
            ) from None
        early, self._early = self._early, None
        self._attach(*(self._spawn() if early is None else early.result()))

    def prestart(self) -> None:
        """Begin starting the writer now, in a thread, so that its interpreter's start
        and the log's opening overlap the node's other start-up work; `start` then
        takes it. Nothing may append to the log in between."""
        if self._early is None and self._sock is None:
            self._early = concurrent.futures.Future()
            early = self._early

            def run() -> None:
                try:
                    early.set_result(self._spawn())
                except BaseException as e:  # raised again by start()
                    early.set_exception(e)

            threading.Thread(target=run, name="audit-writer-start", daemon=True).start()

    def discard(self) -> None:
        """End a writer `prestart` began and `start` never took (the node did not start):
        its socket closes, so it checkpoints nothing new and exits."""
        early, self._early = self._early, None
        self._stopping = True
        if early is None:
            return
        try:
            proc, sock, _ = early.result()
        except Exception as e:  # it never started: nothing to end
            log_.debug("the audit writer begun at start did not start: %s", e)
            return
        sock.close()
        reap(proc, STOP_TIMEOUT_S)

    def _spawn(self) -> Spawned:
        return spawn(self._config, START_TIMEOUT_S)

    def _attach(self, proc: subprocess.Popen[bytes], sock: socket.socket, size: int) -> None:
        loop = self._require_loop()
        self.lost_records.settle(size)
        self._proc, self._sock, self.size = proc, sock, size
        self._reader = FrameReader()
        self._out.clear()
        self._down = None
        loop.add_reader(sock, self._readable)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise AuditError("the audit writer was not started", hint="call start() first")
        return self._loop

    # -- appending -------------------------------------------------------------

    def require(self) -> None:
        """Raise `AuditUnavailable` unless a writer runs to append (none between a death
        and its successor, after its restarts stopped, or once stopping): asked before a
        call is admitted, so nothing has been done yet. A record submitted meanwhile fails
        as any failed record does (`submit`): its caller may already have acted."""
        if self._down is not None or self._sock is None:
            raise _unavailable(self._given_up)

    async def record(self, event: AuditEvent, log: InvocationLog | None) -> None:
        await self.submit(event, log)

    def submit(self, event: AuditEvent, log: InvocationLog | None) -> Awaitable[None]:
        """Queue the record (raising at once if it is refused); await the result to know
        it is durable. On the writer's loop that is a bare future: no coroutine."""
        own = self._loop
        if own is None:
            own = self._require_loop()  # raises: not started
        # On the writer's loop's thread while it runs, that loop is the one running: no
        # other can run there meanwhile (and asking the loop costs Python 3.11 a getpid).
        if threading.get_ident() == self._thread and own.is_running():
            loop = own
        else:
            loop = asyncio.get_running_loop()
        if loop is not own:  # another thread's loop: hand it to the writer's loop
            elsewhere = asyncio.run_coroutine_threadsafe(self.record(event, log), own)
            return asyncio.wrap_future(elsewhere)
        if self._down is not None or self._sock is None:  # the caller may have acted: 500
            raise _failure(self._down or "the audit writer is stopped")
        try:
            data = to_wire(event, log)
        except (TypeError, ValueError) as e:  # a detail that is not JSON
            log_.error("audit record %s not encodable: %s", event.action, e)
            raise _failure("a record could not be encoded") from None
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((event, done))
        self._chunks.append(data)
        if len(self._chunks) >= FLUSH_AT:  # let the writer start while more come
            self._flush()
        elif not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush)
        return done

    def _flush(self) -> None:
        """Send every record queued in this loop iteration as one frame."""
        self._flush_due = False
        if not self._chunks or self._sock is None:
            return
        data = frame(RECORDS, b"\n".join(self._chunks))
        self._chunks = []
        self._out += data
        self._send()

    def _send(self) -> None:
        sock, loop = self._sock, self._loop
        if sock is None or loop is None:
            return
        try:
            sent = sock.send(self._out)
        except BlockingIOError:
            sent = 0
        except OSError:  # the writer is gone: the reader sees EOF and fails the records
            return
        del self._out[:sent]
        if self._out and not self._writing:
            loop.add_writer(sock, self._send)
            self._writing = True
        elif not self._out and self._writing:
            loop.remove_writer(sock)
            self._writing = False

    # -- answers ---------------------------------------------------------------

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        self._answers(data)

    def _answers(self, data: bytes) -> None:
        for kind, body in self._reader.feed(data):
            if kind == COMMITTED:
                self._committed(*COMMITTED_BODY.unpack(body))
            elif kind == FAILED:
                (count,) = COUNT.unpack_from(body)
                self._failed(count, body[COUNT.size :].decode(errors="replace"))

    def _take(self, count: int) -> list[tuple[AuditEvent, asyncio.Future[None]]]:
        pending = self._pending
        return [pending.popleft() for _ in range(min(count, len(pending)))]

    def _committed(self, count: int, first: int, ts: float, seconds: float) -> None:
        items = self._take(count)
        self.size = first + count - 1
        if self._listeners:
            batch = CommittedBatch(
                tuple(CommittedRecord(first + i, ts, ev) for i, (ev, _) in enumerate(items)),
                seconds,
            )
            for listener in self._listeners:
                try:
                    listener(batch)
                except Exception:  # a listener's bug must not fail the append
                    log_.exception("audit listener %r failed", listener)
        for _, fut in items:  # after the listeners: they see the batch first
            if not fut.done():
                fut.set_result(None)

    def _failed(self, count: int, reason: str) -> None:
        error = _failure(reason)
        for _, fut in self._take(count):
            if not fut.done():
                fut.set_exception(error)

    def _detach(self) -> None:
        sock, loop = self._sock, self._loop
        if sock is None or loop is None:
            return
        loop.remove_reader(sock)
        if self._writing:
            loop.remove_writer(sock)
            self._writing = False
        sock.close()
        self._sock = None

    def _lost(self) -> None:
        """The writer's socket closed while the node runs: fail closed, start a new one."""
        self._detach()
        if self._stopping:
            return
        self._down = "the audit writer process exited"
        status = None if self._proc is None else self._proc.poll()
        log_.critical(
            "the audit writer process exited (status %s): %d record(s) in flight fail",
            status,
            len(self._pending) + len(self._chunks),
        )
        self._chunks = []
        self.lost_records.lose((event for event, _ in self._pending), self.size)
        self._failed(len(self._pending), self._down)
        self._restart()

    def _restart(self) -> None:
        loop = self._require_loop()
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > 60.0:
            self._restarts.popleft()
        if len(self._restarts) >= RESTARTS:
            log_.critical(
                "the audit writer died %d times in a minute: the node refuses every call "
                "that must be audited until it is restarted",
                RESTARTS,
            )
            self._given_up = True
            return
        self._restarts.append(now)
        old = self._proc

        def respawn() -> Spawned:
            if old is not None:
                reap(old, 10.0)
            return self._spawn()

        task = loop.run_in_executor(None, respawn)
        task.add_done_callback(self._restarted)

    def _restarted(self, task: asyncio.Future[Spawned]) -> None:
        if self._stopping:
            if not task.cancelled() and task.exception() is None:
                proc, sock, _ = task.result()
                sock.close()
                reap(proc, STOP_TIMEOUT_S)
            return
        error = None if task.cancelled() else task.exception()
        if error is not None or task.cancelled():
            log_.critical("a new audit writer could not start: %s", error)
            self._restart()
            return
        self._attach(*task.result())
        log_.warning(
            "a new audit writer process (pid %s) appends from record %d", self.pid, self.size + 1
        )

    # -- stopping --------------------------------------------------------------

    def stop(self) -> None:
        """Send what is queued, let the writer commit it and checkpoint, wait for it to exit."""
        self._stopping = True
        self._flush()
        sock, loop = self._sock, self._loop
        if sock is not None and loop is not None:
            loop.remove_reader(sock)
            if self._writing:
                loop.remove_writer(sock)
                self._writing = False
            self._drain(sock)
            sock.close()
            self._sock = None
        if self._proc is not None:
            reap(self._proc, STOP_TIMEOUT_S)
        self._failed(len(self._pending), "the audit writer stopped")

    def _drain(self, sock: socket.socket) -> None:
        """Write what is left, close our side, read answers until the writer closes its."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        shut = False
        poller = select.poll()  # not select: the descriptor may be past its 1,024
        while time.monotonic() < deadline:
            if not self._out and not shut:
                sock.shutdown(socket.SHUT_WR)
                shut = True
            poller.register(sock, select.POLLIN | (select.POLLOUT if self._out else 0))
            events = 0
            for _, happened in poller.poll(1000):
                events |= happened
            writable = events & (select.POLLOUT | select.POLLERR)
            readable = events & (select.POLLIN | select.POLLHUP | select.POLLERR)
            if writable:
                try:
                    del self._out[: sock.send(self._out)]
                except BlockingIOError:
                    pass
                except OSError:
                    return
            if readable:
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                self._answers(data)
        log_.error("the audit writer did not finish within %.0f s", STOP_TIMEOUT_S)
