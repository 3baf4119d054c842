"""SQLite's WAL checkpoints, mostly off the audit writer's commit path.

On SQLite (WAL, `synchronous=FULL`) a commit is durable once its frames are in
the write-ahead log and the log is fsynced. Checkpoints then copy those pages
into the database file, fsync it, and let the next transaction start the log
again from its beginning. By default SQLite runs one inside the COMMIT that
takes the log past 1000 pages (`wal_autocheckpoint`), in the committing
connection: the audit writer's commit thread stalls for the copy of about 4 MB
and the database's fsync while every waiter waits, about once per 10,000
records (7-22 ms each, 8-14 % of the commit thread's time, measured in
docs/performance.md). sqlite3 alone (the bench's floor) works the same way.

Here the writer's connection runs no automatic checkpoint below a safety bound
(`SAFETY` times the threshold, for a log that outgrows the estimate). After a
commit has been answered, the commit thread adds its estimate of the pages the
transaction wrote (`committed`); once they reach `pages`, a thread of this class
with its own connection copies the log into the database (PASSIVE: it never
blocks the writer) and fsyncs it, while commits go on. A checkpoint that only
runs beside the writer never lets the log start again (the writer keeps adding
frames), and a log that only grows makes every commit's fsync dearer (it must
also write the file's new size), so when that copy is done the commit thread
itself checkpoints the few frames committed meanwhile, between two
transactions: the next transaction starts the log again, as with SQLite's own.

Durability is unchanged: no commit waits for, or relies on, a checkpoint; a
crash at any moment of one leaves the log, which SQLite replays when it opens.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine

__all__ = ["PAGES", "SAFETY", "WalCheckpointer"]

log_ = logging.getLogger("donjon.audit.writer")

#: Pages in the log (an estimate) that start a checkpoint: SQLite's own default.
PAGES = 1000
#: SQLite's own checkpoint stays on, in the commit, at this many times PAGES.
SAFETY = 4
#: Pages a transaction rewrites beside the new ones: the last leaf of audit_log, its
#: parent, the signed head's page, and one for a checkpoint or an index.
_REWRITTEN = 4


def _page_count(raw: Any) -> int:
    cur = raw.cursor()
    try:
        cur.execute("PRAGMA page_count")
        return int(cur.fetchone()[0])
    finally:
        cur.close()


class WalCheckpointer:
    """The WAL checkpoints of one writer connection (see the module docstring)."""

    def __init__(self, engine: Engine, raw: Any, pages: int = PAGES) -> None:
        self._engine = engine
        self._raw = raw
        self._pages = pages
        self._cond = threading.Condition()
        self._since = 0  # pages written since the last checkpoint, estimated
        self._size = _page_count(raw)
        #: "idle", "copying" (the thread works), "caught" (the thread is done: the
        #: commit thread checkpoints what came meanwhile)
        self._state = "idle"
        self._closing = False
        self._error_logged = False
        cur = raw.cursor()
        try:
            cur.execute(f"PRAGMA wal_autocheckpoint={int(pages * SAFETY)}")
        finally:
            cur.close()
        self._thread = threading.Thread(target=self._run, name="audit-wal", daemon=True)
        self._thread.start()

    @classmethod
    def for_connection(cls, engine: Engine, raw: Any) -> WalCheckpointer | None:
        """One for `raw` if it is a SQLite database in WAL mode, else None."""
        if engine.dialect.name != "sqlite":
            return None
        cur = raw.cursor()
        try:
            cur.execute("PRAGMA journal_mode")
            mode = str(cur.fetchone()[0]).lower()
        finally:
            cur.close()
        return cls(engine, raw) if mode == "wal" else None

    def committed(self, waiting: bool) -> None:
        """After a commit on the writer's connection (its thread, between two
        transactions): count its pages; start a copy, or finish one when no records
        are `waiting` for the next transaction (or the log is twice the threshold)."""
        try:
            size = _page_count(self._raw)
        except Exception as e:  # SQLite's own checkpoint bounds the log
            self._failed(e)
            return
        self._since += max(size - self._size, 0) + _REWRITTEN
        self._size = size
        with self._cond:
            state = self._state
            if state == "idle" and self._since >= self._pages:
                self._state = "copying"
                self._cond.notify_all()
                return
        if state == "caught" and (not waiting or self._since >= 2 * self._pages):
            self._catch_up()

    def _catch_up(self) -> None:
        """Checkpoint, on the writer's connection, what was committed during the copy."""
        cur = self._raw.cursor()
        try:
            cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
            busy, log, done = cur.fetchone()
        except Exception as e:  # the log stays; SQLite's own checkpoint bounds it
            self._failed(e)
            busy, log, done = 1, self._since, 0
        finally:
            cur.close()
        # A log copied whole starts again at the next transaction; else count what is left.
        self._since = 0 if not busy and log == done else max(int(log) - int(done), 0)
        with self._cond:
            self._state = "idle"

    def _run(self) -> None:
        raw = None
        try:
            raw = self._engine.raw_connection()
            while True:
                with self._cond:
                    while self._state != "copying" and not self._closing:
                        self._cond.wait()
                    if self._closing:
                        return
                cur = raw.cursor()
                try:
                    cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    cur.fetchall()
                except Exception as e:  # retried at the next threshold
                    self._failed(e)
                finally:
                    cur.close()
                with self._cond:
                    self._state = "caught"
        except Exception as e:  # no connection: SQLite's own checkpoint bounds the log
            self._failed(e)
        finally:
            if raw is not None:
                raw.close()

    def _failed(self, error: Exception) -> None:
        if not self._error_logged:  # the records are durable; only the copy waits
            log_.warning("audit WAL checkpoint failed (SQLite's own takes over): %s", error)
            self._error_logged = True

    def close(self) -> None:
        """End the thread (a copy in progress finishes first)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()
