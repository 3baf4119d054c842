"""One serving node per data dir: an exclusive lock held for the node's whole life.

A node owns its data dir: its audit writer holds the log's head and Merkle tree in
memory, and it sweeps the sandboxes' staging and cgroups named from the data dir as
it starts. A second `donjon serve` on the same data dir (a unit started twice, a
restart while the old process still lingers) did both: it swept the first node's
sandboxes and its writer appended to the same log, so the first node answered every
call and deploy 500 until it was stopped. Now the second one is refused, before it
opens anything, with the pid of the node that holds the dir.

The lock is `flock(2)` on `DATA_DIR/node.lock`: the kernel releases it when the holder
ends, however it ends (SIGKILL included), so a crash never leaves a stale lock behind
and the file's content (the holder's pid and start) is only what the error message
says. The descriptor is close-on-exec: no process the node starts (the audit writer,
the scan helper, sandboxes) keeps the lock alive after the node.

A node whose database is not the data dir's own SQLite file (DONJON_DATABASE_URL) also
holds the database (`hold_database_lock`): a SQLite file elsewhere by the same kind of
lock on a file beside it, a PostgreSQL database by a session advisory lock on a
connection kept open for the node's life (the server releases it when that connection
ends, the node's death included). Two data dirs on one database would be two audit
writers on one log; several nodes sharing a database are not supported yet.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from donjon.config_urls import DATA_DIR_DATABASE, sqlite_file
from donjon.errors import Error
from donjon.store.database import StoreError, connect

__all__ = [
    "DATABASE_LOCK_KEY",
    "LOCK_NAME",
    "WATCH_S",
    "DatabaseLock",
    "NodeBusy",
    "NodeLock",
    "hold_database_lock",
    "hold_init_lock",
    "hold_node_lock",
    "sqlite_lock_path",
]

log_ = logging.getLogger("donjon")

#: Seconds between a serving node's looks at the connection holding its PostgreSQL lock.
WATCH_S = 2.0
#: The lock file's name in the data dir.
LOCK_NAME = "node.lock"
#: At most this much of the file is read for the message (its writer writes far less).
_MAX_NOTE = 4096
#: The PostgreSQL advisory lock a node holds on its database (the space is per database).
DATABASE_LOCK_KEY = int.from_bytes(hashlib.sha256(b"donjon.node").digest()[:8], "big", signed=True)
#: The one `donjon init` writes a database server at a time holds, and how long another waits.
INIT_LOCK_KEY = int.from_bytes(hashlib.sha256(b"donjon.init").digest()[:8], "big", signed=True)
INIT_WAIT_S = 120


class NodeBusy(Error):
    """Another process serves this data dir."""

    title = "Data dir in use"


class NodeLock:
    """The held lock; `release` (or the process's end) gives it up."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Give the data dir up (closing the descriptor releases the lock)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def hold_node_lock(data_dir: Path) -> NodeLock:
    """Take `data_dir`'s node lock for this process, or raise `NodeBusy` naming its holder.

    The data dir must exist (an uninitialised one is refused by the node's opening, with
    its own message); the lock file is made 0600 if missing, and never followed if it is
    a symlink."""
    return _hold_file(data_dir / LOCK_NAME, str(data_dir))


def _hold_file(path: Path, what: str) -> NodeLock:
    """flock `path` (made 0600 if missing) for this process, or raise `NodeBusy`."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        raise Error(
            f"cannot open the node lock {path}: {e.strerror}",
            hint="the data dir must be a directory this user owns and may write",
        ) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        note = _read_note(fd)
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise Error(f"cannot lock {path}: {e.strerror}") from e
        raise NodeBusy(
            f"{what} is already served by another donjon process{note}", hint=_HINT
        ) from None
    with contextlib.suppress(OSError):  # only a refused second node's message would lack it
        _write_note(fd)
    return NodeLock(path, fd)


def _wait_file(path: Path, what: str, wait_s: float) -> NodeLock:
    """`_hold_file`, waiting up to `wait_s` seconds for the process holding it."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return _hold_file(path, what)
        except NodeBusy:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.05)


_HINT = (
    "stop that node first; a data dir and its database are served by one node at a time "
    "(a second node needs a data dir and a database of its own: DONJON_DATA_DIR, "
    "DONJON_DATABASE_URL)"
)


class DatabaseLock:
    """A node's hold on its database: a PostgreSQL connection holding the advisory lock,
    or a lock file beside a SQLite file outside the data dir.

    A session lock lives as long as its connection: a PostgreSQL restarted (or the
    connection ended by the server: `pg_terminate_backend`, `idle_session_timeout`) under
    the node released it, and a second node then served the same database. With `on_lost`
    the connection is watched every `watch_s` seconds; once it is gone the lock is taken
    again on a new one as soon as the server answers, and if another node took it first
    `on_lost` is called (the node stops)."""

    def __init__(
        self,
        connection: Connection | None,
        file: NodeLock | None,
        on_lost: Callable[[], None] | None = None,
        watch_s: float = WATCH_S,
    ) -> None:
        self._connection = connection
        self._file = file
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        if connection is not None and on_lost is not None:
            self._watch = threading.Thread(
                target=self._watch_lock, args=(on_lost, watch_s), name="database-lock", daemon=True
            )
            self._watch.start()

    def release(self) -> None:
        self._stop.set()
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join(timeout=5)  # at worst a connection that does not answer
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(SQLAlchemyError):
                connection.close()
            connection.engine.dispose()
        if self._file is not None:
            self._file.release()

    def _watch_lock(self, on_lost: Callable[[], None], watch_s: float) -> None:
        """The watch; anything but the database's own errors ends the node, not the watch
        alone (a node whose lock is no longer watched could serve beside another)."""
        try:
            self._watch_loop(on_lost, watch_s)
        except Exception:
            log_.exception("the watch over the database's lock failed: this node stops")
            on_lost()

    def _watch_loop(self, on_lost: Callable[[], None], watch_s: float) -> None:
        connection = self._connection
        while connection is not None and not self._stop.wait(watch_s):
            try:
                if _holds(connection):
                    continue
                # The connection answers but its session no longer holds the lock (a
                # pooler's `DISCARD ALL`, or transaction pooling): lost as well.
                log_.warning("this node's session no longer holds the database's lock: taking it")
            except SQLAlchemyError:
                log_.warning("the connection holding the database's lock was lost: taking it again")
            with contextlib.suppress(SQLAlchemyError):
                connection.close()
            while not self._stop.is_set():
                try:
                    again = _take(connection.engine)
                except SQLAlchemyError:  # the server does not answer yet: nobody can take it
                    self._stop.wait(min(watch_s, 1.0))
                    continue
                if again is None:
                    log_.error(
                        "another donjon node took this node's database while its lock was "
                        "lost (the database server restarted?): this node stops"
                    )
                    on_lost()
                    return
                self._connection = connection = again
                log_.warning("the database's lock is held again")
                break


def hold_database_lock(
    url: str,
    sqlite_path: Path | None,
    data_dir: Path,
    shown: str,
    on_lost: Callable[[], None] | None = None,
    watch_s: float = WATCH_S,
) -> DatabaseLock | None:
    """Hold the node's database for this process (None: the data dir's own SQLite file,
    which the data dir's lock holds already), or raise `NodeBusy`. `shown`: the URL as
    messages may say it (no password). `on_lost`: called if a PostgreSQL lock lost with
    its connection was taken by another node before this one took it again."""
    if sqlite_path is not None:
        lock_file = sqlite_lock_path(sqlite_path)
        if lock_file == data_dir.resolve() / LOCK_NAME:
            return None
        return DatabaseLock(None, _hold_file(lock_file, f"the database {sqlite_path}"))
    engine = connect(url, pooled=False)
    try:
        connection = _take(engine)
    except SQLAlchemyError as e:
        engine.dispose()
        raise StoreError(f"cannot reach the database {shown}: {e}") from e
    if connection is None:
        engine.dispose()
        raise NodeBusy(f"the database {shown} is already served by another donjon node", hint=_HINT)
    return DatabaseLock(connection, None, on_lost, watch_s)


@contextlib.contextmanager
def hold_init_lock(url: str, shown: str) -> Iterator[None]:
    """`donjon init` waits in here for another init of the same database to end (its
    check that the database holds no node's keys, then its writes, are then one at a
    time): on a server by an advisory lock, on a SQLite file by the file's lock, which a
    node serving it holds too (`sqlite_lock_path`)."""
    path = sqlite_file(url)
    if path is not None:
        # The file's lock (the data dir's node lock for its own donjon.db): an init waits
        # for another one, and for a node serving the file, as on a server.
        lock = _wait_file(sqlite_lock_path(path), f"the database {path}", INIT_WAIT_S)
        try:
            yield
        finally:
            lock.release()
        return
    engine = connect(url, pooled=False)
    try:
        try:
            connection = engine.connect()
            connection.execute(text(f"SET lock_timeout = '{INIT_WAIT_S}s'"))
            connection.execute(select(func.pg_advisory_lock(INIT_LOCK_KEY)))
            connection.commit()  # a session lock, released with the connection
        except SQLAlchemyError as e:
            raise StoreError(f"cannot reach the database {shown}: {e}") from e
        try:
            yield
        finally:
            with contextlib.suppress(SQLAlchemyError):
                connection.close()
    finally:
        engine.dispose()


#: The advisory lock's two halves as pg_locks shows a bigint key (objsubid 1).
_KEY_HIGH = (DATABASE_LOCK_KEY >> 32) & 0xFFFFFFFF
_KEY_LOW = DATABASE_LOCK_KEY & 0xFFFFFFFF
_HOLDS = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND pid = pg_backend_pid() AND classid::bigint = :high AND objid::bigint = :low"
    " AND objsubid = 1"
)


def _holds(connection: Connection) -> bool:
    """Whether this connection's own session holds the node's lock (not merely answers)."""
    held = connection.execute(_HOLDS, {"high": _KEY_HIGH, "low": _KEY_LOW}).scalar()
    connection.commit()
    return bool(held)


def _take(engine: Engine) -> Connection | None:
    """A new connection holding the node's advisory lock; None if another session holds it."""
    connection = engine.connect()
    try:
        held = connection.execute(select(func.pg_try_advisory_lock(DATABASE_LOCK_KEY))).scalar()
        connection.commit()  # a session lock: kept, with no transaction left open
    except BaseException:
        with contextlib.suppress(SQLAlchemyError):
            connection.close()
        raise
    if not held:
        connection.close()
        return None
    return connection


def sqlite_lock_path(sqlite_path: Path) -> Path:
    """The one lock file of a SQLite file, whichever node names it (and however: its real
    path, a symlink to it names the same): a data dir's own `donjon.db` is held by that
    data dir's node lock, which its node takes by default; any other file by a lock file
    beside it. A copy of a data dir whose DONJON_DATABASE_URL names the first's donjon.db
    is refused by the first's node lock."""
    real = sqlite_path.resolve()
    if real.name == DATA_DIR_DATABASE:
        return real.parent / LOCK_NAME
    return real.with_name(real.name + ".node-lock")


def _write_note(fd: int) -> None:
    note = {"pid": os.getpid(), "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(note).encode() + b"\n", 0)


def _read_note(fd: int) -> str:
    """` (pid N, serving since T)` from the holder's note, or "" if it says nothing usable."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        note = json.loads(os.pread(fd, _MAX_NOTE, 0))
        pid, since = note["pid"], note["since"]
        if isinstance(pid, int) and isinstance(since, str):
            return f" (pid {pid}, serving since {since[:40]})"
    return ""
