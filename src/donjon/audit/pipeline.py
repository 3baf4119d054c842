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
records were not answered yet). Every answer goes out from the commit thread,
in the order the records came, which is the order the node waits for them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass

from donjon.audit.log import AuditLog, Prepared
from donjon.audit.wire import COMMITTED, COMMITTED_BODY, COUNT, FAILED, frame

__all__ = ["Pipeline"]

log_ = logging.getLogger("donjon.audit.writer")


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
            if self._queue_chunk(chunk, gen):
                return

    def _queue_chunk(self, chunk: _Chunk, gen: int | None) -> bool:
        with self._cond:
            if gen is not None and gen != self._gen:  # built on records that failed
                return False
            if isinstance(chunk, Prepared):
                self._tip = chunk.frontier
            self._queue.append(chunk)
            self._queued += chunk.count
            self._cond.notify_all()
        return True

    def close(self) -> None:
        """Commit and answer everything queued, then end the commit thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    # -- the commit thread ------------------------------------------------------

    def _take(self) -> list[_Chunk]:
        """Everything queued, once there is something (nothing: closing or time to
        look at the checkpoint cadence)."""
        log = self._log
        with self._cond:
            while not self._queue and not self._closing:
                wait = log._checkpointer.seconds_until_due(log.size, log._clock())
                if not self._cond.wait(None if wait is None else max(wait, 0.05)):
                    break
            chunks, self._queue, self._queued = self._queue, [], 0
            self._cond.notify_all()
            return chunks

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException:  # a bug: fail closed rather than leave callers waiting
            log_.exception("the audit writer's commit thread failed: the writer stops")
            with self._cond:
                self.gone = True
                self._cond.notify_all()
            # The node sees the socket close, fails what is in flight and restarts us.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def _serve(self) -> None:
        while True:
            chunks = self._take()
            if chunks:
                self._commit(chunks)
                continue
            if self._closing:
                return
            try:  # nothing came for a while: a checkpoint by time, if due
                self._log.checkpoint(force=False)
            except Exception as e:  # retried at the next wake-up
                log_.error("audit checkpoint failed: %s", e)

    def _commit(self, chunks: list[_Chunk]) -> None:
        started = time.perf_counter()
        good = [c for c in chunks if isinstance(c, Prepared)]
        error: Exception | None = None
        checkpoint = None
        if good:
            try:
                checkpoint = self._log.store(good)
            except Exception as e:  # rolled back: these and what follows them fail
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
                why = c.reason if isinstance(c, _Refused) else type(error).__name__
                out.append(frame(FAILED, COUNT.pack(c.count) + why.encode()))
        try:
            self._sock.sendall(b"".join(out))
        except OSError as e:
            log_.warning("the audit writer's socket failed (%s): it stops", e)
            with self._cond:
                self.gone = True
                self._cond.notify_all()
