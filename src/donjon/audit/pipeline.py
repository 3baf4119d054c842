"""The writer process's two stages: the next records are prepared while these commit.

The reading thread (audit/writer.py) turns each run of records it reads into a
`Prepared` chunk that follows the chunks before it (seqs, time, rows, leaf
hashes, the tree extended: `AuditLog.prepare`) and queues it. The commit thread
inserts each chunk as it comes into the open transaction and, once the node's
burst is in (a RECORDS frame ends it, audit/remote.py), writes the signed head
of the last and commits (SQLite's fsync runs without the GIL); only then does it
answer COMMITTED for each chunk. So the loop's encoding, the reading, hashing
and inserting of a burst overlap one another, the next burst is read and
hashed while this one's fsync runs, and a commit takes everything that came
meanwhile (group commit).

A record is answered only after its own transaction committed. If a transaction
fails, its chunks and every chunk queued behind it (their seqs follow records
that were not written) are answered FAILED, and the tree to prepare on goes
back to the committed one; a chunk being prepared then is prepared again (its
records were not answered yet). Every answer goes out from the commit thread,
in the order the records came, which is the order the node waits for them.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass

from donjon.audit.entry import Entry, from_wire
from donjon.audit.log import AuditLog, Prepared
from donjon.audit.wire import COMMITTED, COMMITTED_BODY, COUNT, FAILED, frame

__all__ = ["Pipeline"]

log_ = logging.getLogger("donjon.audit.writer")

#: Seconds an open transaction waits for the rest of a burst before it commits anyway.
_OPEN_WAIT_S = 0.05


@dataclass(frozen=True, slots=True)
class _Refused:
    """Records that could not be prepared: answered FAILED in their turn."""

    count: int
    reason: str


_Chunk = Prepared | _Refused


def _entry(data: bytes) -> Entry | bytes:
    return data if data.count(b"\x01") == 1 else from_wire(data)


def _size(chunk: _Chunk | None) -> int:
    if chunk is None:
        return 0
    return len(chunk.rows) if isinstance(chunk, Prepared) else chunk.count


class Pipeline:
    """Prepares on the caller's thread, commits and answers on its own."""

    def __init__(
        self,
        sock: socket.socket,
        log: AuditLog,
        max_queued: int,
        open_wait_s: float = _OPEN_WAIT_S,
    ) -> None:
        self._sock = sock
        self._log = log
        self._max = max_queued
        self._open_wait_s = open_wait_s
        self._cond = threading.Condition()
        #: Chunks with whether a burst ends with them (None: only a burst's end).
        self._queue: list[tuple[_Chunk | None, bool]] = []
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

    def submit(self, data: list[bytes], end: bool) -> None:
        """Prepare these wire entries after every record submitted before them and
        queue them (waits while `max_queued` records wait); `end`: the node's burst
        ends with them, so the commit thread commits once it has them."""
        if not data:
            self._queue_chunk(None, end, None)
            return
        try:
            entries = [_entry(e) for e in data]
        except Exception as e:  # not what to_wire makes: refused, in its turn
            self._queue_chunk(_Refused(len(data), type(e).__name__), end, None)
            return
        while True:
            with self._cond:
                while self._queued >= self._max and not self.gone:
                    self._cond.wait()
                gen, tip = self._gen, self._tip
            try:
                chunk: _Chunk = self._log.prepare(entries, tip.copy())
            except Exception as e:  # e.g. sealing an invocation log failed
                log_.error("audit records could not be prepared: %s", e)
                chunk = _Refused(len(data), type(e).__name__)
            if self._queue_chunk(chunk, end, gen):
                return

    def _queue_chunk(self, chunk: _Chunk | None, end: bool, gen: int | None) -> bool:
        with self._cond:
            if gen is not None and gen != self._gen:  # built on records that failed
                return False
            if isinstance(chunk, Prepared):
                self._tip = chunk.frontier
            self._queue.append((chunk, end))
            self._queued += _size(chunk)
            self._cond.notify_all()
        return True

    def close(self) -> None:
        """Commit and answer everything queued, then end the commit thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    # -- the commit thread ------------------------------------------------------

    def _take(self, open_: bool) -> tuple[list[tuple[_Chunk | None, bool]], bool]:
        """What is queued (waiting for it), and whether to commit after it."""
        log = self._log
        with self._cond:
            while not self._queue and not self._closing:
                if open_:  # a burst's end is late: commit what came of it
                    wait: float | None = self._open_wait_s
                else:
                    wait = log._checkpointer.seconds_until_due(log.size, log._clock())
                    wait = None if wait is None else max(wait, 0.05)
                if not self._cond.wait(wait):
                    break
            items, self._queue, self._queued = self._queue, [], 0
            self._cond.notify_all()
            return items, self._closing or not items or any(end for _, end in items)

    def _run(self) -> None:
        taken: list[_Chunk] = []  # in the open transaction (or refused), not answered
        inserted: list[Prepared] = []
        while True:
            items, end = self._take(bool(taken))
            if not items and not taken:
                if self._closing:
                    return
                try:  # nothing came for a while: a checkpoint by time, if due
                    self._log.checkpoint(force=False)
                except Exception as e:  # retried at the next wake-up
                    log_.error("audit checkpoint failed: %s", e)
                continue
            error = self._insert(items, taken, inserted)
            if not taken or (error is None and not end and sum(map(_size, taken)) < self._max):
                continue  # the burst goes on: its rest joins this transaction
            started = time.perf_counter()
            checkpoint = None
            if error is None and inserted:
                try:
                    checkpoint = self._log.store(inserted, inserted=len(inserted))
                except Exception as e:  # rolled back
                    error = e
            if error is not None:
                taken += self._reset(error, inserted)
            self._answer(taken, error, time.perf_counter() - started)
            taken, inserted = [], []
            if checkpoint is not None:  # its fsync and its sinks are not on the callers' path
                self._log._checkpointer.publish(checkpoint)

    def _insert(
        self,
        items: list[tuple[_Chunk | None, bool]],
        taken: list[_Chunk],
        inserted: list[Prepared],
    ) -> Exception | None:
        """Insert `items`' chunks into the open transaction; add them to `taken` and
        the inserted ones to `inserted`. Returns the error that rolled it back."""
        error: Exception | None = None
        for chunk, _ in items:
            if chunk is None:
                continue
            taken.append(chunk)
            if isinstance(chunk, Prepared) and error is None:
                try:
                    self._log.insert(chunk)
                    inserted.append(chunk)
                except Exception as e:  # rolled back: these and what follows fail
                    error = e
        return error

    def _reset(self, error: Exception, inserted: list[Prepared]) -> list[_Chunk]:
        """After a failed transaction: the chunks queued behind it, to fail too."""
        log_.error("audit append of %d record(s) failed: %s", sum(map(_size, inserted)), error)
        with self._cond:
            self._gen += 1
            stale = [chunk for chunk, _ in self._queue if chunk is not None]
            self._queue, self._queued = [], 0
            self._tip = self._log._frontier.copy()
            self._cond.notify_all()
        return stale

    def _answer(self, chunks: list[_Chunk], error: Exception | None, seconds: float) -> None:
        out = []
        for c in chunks:
            if isinstance(c, Prepared) and error is None:
                body = COMMITTED_BODY.pack(len(c.rows), c.first, c.ts, seconds)
                out.append(frame(COMMITTED, body))
            else:
                why = c.reason if isinstance(c, _Refused) else type(error).__name__
                out.append(frame(FAILED, COUNT.pack(_size(c)) + why.encode()))
        try:
            self._sock.sendall(b"".join(out))
        except OSError as e:
            log_.warning("the audit writer's socket failed (%s): it stops", e)
            with self._cond:
                self.gone = True
                self._cond.notify_all()
