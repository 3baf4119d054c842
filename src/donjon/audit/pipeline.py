"""The writer process's two stages: the next records are prepared while these commit.

The reading thread (audit/writer.py) turns each run of records it reads into a
`Prepared` chunk that follows the chunks before it (seqs, time, rows, leaf
hashes, the tree extended: `AuditLog.prepare`) and queues it. The commit thread
takes every chunk queued, writes them in one transaction with the signed head
of the last (`AuditLog.store`), commits (SQLite's fsync runs without the GIL),
and only then answers COMMITTED for each chunk. So the next records are read,
parsed and hashed while this transaction's fsync runs, and the next
transaction takes every record that came meanwhile (group commit).

A record is answered only after its own transaction committed. If a transaction
fails, its chunks and every chunk queued behind it (their seqs follow records
that were not written) are answered FAILED, and the tree to prepare on goes
back to the committed one; a chunk being prepared then is prepared again (its
records were not answered yet). Every answer goes out from the thread that
holds the commit, in the order the records came, which is the order the node
waits for them.

Small chunks skip the hand-off. When the commit thread is idle, nothing is
queued and a chunk holds at most `INLINE_MAX` records, the reading thread
commits and answers it itself: no wake-up of the other thread, no GIL passed
back and forth, for the groups of a few records a node at moderate load makes.
While that commit runs nobody reads; what arrives meanwhile is read after it and
goes in the next transaction, which costs the preparing of a few records. A
larger chunk, or any chunk while a commit runs or chunks wait, takes the two
stages above, so large groups keep preparing while they commit. Either way one
thread at a time holds the commit (`_committing`), answers go out in order
(a chunk is committed inline only when every chunk before it is answered), and
a failure resets the tree as above. A transaction that fails with the writer's
connection lost (`_connection_gone`: its COMMIT may have landed) is not answered: the
writer fails closed. A commit thread that breaks (a bug, or that) keeps the commit as it
fails closed, and the reading thread commits nothing inline once the
writer is `gone`: records the node has failed are not written after it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
from dataclasses import dataclass

from donjon.audit.log import AuditLog, Prepared
from donjon.audit.wire import COMMITTED, COMMITTED_BODY, COUNT, FAILED, STORAGE_FULL, frame
from donjon.store import storage_full

__all__ = ["INLINE_MAX", "Pipeline"]

log_ = logging.getLogger("donjon.audit.writer")

#: A chunk of at most this many records, met by an idle commit thread and an empty
#: queue, is committed by the thread that prepared it. Above it the next group's
#: preparing in series (3-5 µs a record) would cost about what the hand-off saves
#: (30-70 µs of CPU a group, docs/performance.md, `fold`), so it overlaps the commit.
INLINE_MAX = 32
#: The commit thread's shortest sleep while a checkpoint is due by time, in seconds.
_SLACK_S = 0.05


@dataclass(frozen=True, slots=True)
class _Refused:
    """Records that could not be prepared: answered FAILED in their turn."""

    count: int
    reason: str


_Chunk = Prepared | _Refused


class Pipeline:
    """Prepares on the caller's thread, commits and answers on its own."""

    def __init__(
        self,
        sock: socket.socket,
        log: AuditLog,
        max_queued: int,
    ) -> None:
        self._sock = sock
        self._log = log
        self._max = max_queued
        self._cond = threading.Condition()
        self._queue: list[_Chunk] = []
        self._queued = 0
        self._closing = False
        #: A thread holds the commit: a transaction or a timed checkpoint runs.
        self._committing = False
        #: When the idle commit thread wakes to look at the checkpoint cadence (the
        #: log's clock; inf: only when woken); None while it is awake.
        self._asleep_until: float | None = None
        #: Bumped when a transaction fails: chunks prepared before are stale.
        self._gen = 0
        #: The tree after every chunk queued (the committed tree when none is); never
        #: extended in place (a stored chunk's tree becomes the log's).
        self._tip = log._frontier.copy()
        #: The node's end failed while answering: the reading thread stops.
        self.gone = False
        self._thread = threading.Thread(target=self._run, name="audit-commit", daemon=True)
        self._thread.start()

    def submit(self, data: list[bytes]) -> None:
        """Prepare these wire entries after every record submitted before them and
        queue them for the next transaction (waits while `max_queued` records wait)."""
        while True:
            with self._cond:
                while self._queued >= self._max and not self.gone:
                    self._cond.wait()
                gen, tip = self._gen, self._tip
            try:
                chunk: _Chunk = self._log.prepare(data, tip.copy())
            except Exception as e:  # not what to_wire makes, or sealing a log failed
                log_.error("audit records could not be prepared: %s", e)
                chunk = _Refused(len(data), type(e).__name__)
            queued = self._queue_chunk(chunk, gen)
            if queued is None:
                continue
            if not queued:
                self._commit_here(chunk)
            return

    def _queue_chunk(self, chunk: _Chunk, gen: int) -> bool | None:
        """Queue `chunk` for the commit thread (True), or claim the commit for this
        thread when the chunk is small and the commit idle with nothing queued (False);
        None when it was built on records that failed (prepare it again)."""
        with self._cond:
            if gen != self._gen:  # built on records that failed
                return None
            if isinstance(chunk, Prepared):
                self._tip = chunk.frontier
                idle = not self._committing and not self._queue and not self.gone
                if idle and chunk.count <= INLINE_MAX:
                    self._committing = True
                    return False
            self._queue.append(chunk)
            self._queued += chunk.count
            self._cond.notify_all()
        return True

    def _commit_here(self, chunk: _Chunk) -> None:
        """Commit and answer `chunk` on this thread (the commit is claimed)."""
        try:
            self._commit([chunk])
        except BaseException:  # a bug: fail closed, as the commit thread does
            self._fail_closed("the audit writer's inline commit failed: the writer stops")
        finally:
            self._release()

    def _release(self) -> None:
        """Give the commit back. The idle commit thread is woken only when chunks wait,
        the pipeline closes, or the records just committed make a checkpoint due by time
        before it would wake (once a cadence: it then sleeps until then)."""
        with self._cond:
            self._committing = False
            if self._queue or self._closing:
                self._cond.notify_all()
            elif self._asleep_until is not None:
                log = self._log
                now = log._clock()
                wait = log._checkpointer.seconds_until_due(log.size, now)
                if wait is not None and now + wait < self._asleep_until - _SLACK_S:
                    self._cond.notify_all()

    def _fail_closed(self, why: str) -> None:
        log_.exception(why)
        with self._cond:
            self.gone = True
            self._cond.notify_all()
        # The node sees the socket close, fails what is in flight and restarts us.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Commit and answer everything queued, then end the commit thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    # -- the commit thread ------------------------------------------------------

    def _take(self) -> list[_Chunk] | None:
        """Everything queued, once there is something, with the commit claimed (nothing:
        closing or time to look at the checkpoint cadence, the commit claimed too;
        None: an inline commit holds it, look again)."""
        log = self._log
        with self._cond:
            while self._committing or (not self._queue and not self._closing):
                now = log._clock()
                wait = log._checkpointer.seconds_until_due(log.size, now)
                wait = None if wait is None else max(wait, _SLACK_S)
                self._asleep_until = math.inf if wait is None else now + wait
                woken = self._cond.wait(wait)
                self._asleep_until = None
                if not woken:
                    if self._committing:  # an inline commit runs: look again after it
                        return None
                    break
            self._committing = True
            chunks, self._queue, self._queued = self._queue, [], 0
            self._cond.notify_all()
            return chunks

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException:  # a bug: fail closed rather than leave callers waiting
            self._fail_closed("the audit writer's commit thread failed: the writer stops")

    def _serve(self) -> None:
        while True:
            chunks = self._take()
            if chunks is None:
                continue
            # Given back only on these paths: a bug that ends this thread keeps the
            # commit, so nothing is committed inline after the writer failed closed.
            if chunks:
                self._commit(chunks)
            elif self._closing:
                self._release()
                return
            else:
                try:  # nothing came for a while: a checkpoint by time, if due
                    self._log.checkpoint(force=False)
                except Exception as e:  # retried at the next wake-up
                    log_.error("audit checkpoint failed: %s", e)
            self._release()

    def _commit(self, chunks: list[_Chunk]) -> None:
        started = time.perf_counter()
        good = [c for c in chunks if isinstance(c, Prepared)]
        error: Exception | None = None
        checkpoint = None
        if good:
            try:
                checkpoint = self._log.store(good)
            except Exception as e:  # rolled back: these and what follows them fail
                if _connection_gone(self._log, e):  # committed or not: none can say here
                    log_.critical("the audit writer's database connection is lost: %s", e)
                    raise  # unanswered: the writer fails closed, the node starts another
                error = e
                chunks += self._reset(e, good)
        self._answer(chunks, error, time.perf_counter() - started)
        if checkpoint is not None:  # its fsync and its sinks are not on the callers' path
            self._log._checkpointer.publish(checkpoint)

    def _reset(self, error: Exception, failed: list[Prepared]) -> list[_Chunk]:
        """After a failed transaction: the chunks queued behind it, to fail too."""
        log_.error("audit append of %d record(s) failed: %s", sum(c.count for c in failed), error)
        with self._cond:
            self._gen += 1
            stale, self._queue, self._queued = self._queue, [], 0
            self._tip = self._log._frontier.copy()
            self._cond.notify_all()
        return stale

    def _answer(self, chunks: list[_Chunk], error: Exception | None, seconds: float) -> None:
        out = []
        for c in chunks:
            if isinstance(c, Prepared) and error is None:
                body = COMMITTED_BODY.pack(c.count, c.first, c.ts, seconds)
                out.append(frame(COMMITTED, body))
            else:
                why = c.reason if isinstance(c, _Refused) else _reason(error)
                out.append(frame(FAILED, COUNT.pack(c.count) + why.encode()))
        try:
            self._sock.sendall(b"".join(out))
        except OSError as e:
            log_.warning("the audit writer's socket failed (%s): it stops", e)
            with self._cond:
                self.gone = True
                self._cond.notify_all()


def _connection_gone(log: AuditLog, error: Exception) -> bool:
    """Whether `error` left the writer's one connection unusable (the dialect's own test:
    psycopg's connection closed or broken). A COMMIT whose answer was lost so may have
    committed, so its records are not answered FAILED (appended again, they would be
    repeated): the writer fails closed with them unanswered, as a killed one does, and
    the node's new writer says from the log's size which of them are in it
    (audit/lost.py). Before, they were answered FAILED, and every later transaction
    failed on the dead connection for as long as the node ran."""
    raw, dialect = log._raw, log._engine.dialect
    if raw is None or not isinstance(error, dialect.loaded_dbapi.Error):  # the driver's
        return False
    return bool(dialect.is_disconnect(error, raw.dbapi_connection, None))


def _reason(error: Exception | None) -> str:
    """A failed transaction's reason on the wire: STORAGE_FULL, or the error's type."""
    if error is not None and storage_full(error):
        return STORAGE_FULL
    return type(error).__name__
