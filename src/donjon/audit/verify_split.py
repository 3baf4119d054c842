"""Verify's records read and hashed by several processes at once (issue 14, target 4).

Verifying is CPU-bound: each record's leaf hash, its checks and the tree's fold
take about 3.5 µs a record in Python beside SQLite's 1.4 µs to read it (a
million records took 4.8-5.2 s on one core of the machine docs/performance.md's
twenty-first round names). The tree splits without changing a hash: from a leaf
index that is a multiple of a power of two, the leaves after it form perfect
subtrees of the whole tree, so their compact range can be folded apart and
grafted on (`Frontier.graft`). So the records after the verified start are cut
at blocks of 2**BLOCK_BITS leaves, each process reads its run of blocks over its
own connection and returns, per block, the block's compact range and the compact
range at each checkpoint's size inside it; the verifier grafts them in order and
compares the roots at each checkpoint as it goes.

Only what is plainly good is split. The log's largest seq must be the signed
head's size (rows after the head, or missing at its end, are the one-process
path's to name). A process that meets any row that is not plainly good (a seq
out of order, a leaf hash that differs, a record naming another seq), a run that
ends short, a process that fails, and any root that differs, send the whole
verification back to the one-process path over the verifier's own snapshot, so a
bad log is reported exactly as it always was: which record, which range. The
one-process path also runs for short logs (`MIN_RECORDS`), for one process, and
where a reader cannot be sure to read the verifier's database (`source_of`).

What each process reads: on PostgreSQL, the verifier's own snapshot (exported,
and imported by each reader's transaction). On SQLite, the same file (its device
and inode, checked by each reader) in a snapshot of its own, taken after the
verifier's: the log is append-only and the runs stop at the head's size, so it
holds the same rows unless someone rewrote them meanwhile, and whatever a
process reads must still hash to the signed checkpoints and head. A reader has no
deadline of its own: a database that stops answering holds the verification, as
it would hold the verifier's own connection.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import os
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from sqlalchemy import Engine

from donjon.audit.frontier import Frontier

__all__ = [
    "BLOCK_BITS",
    "CHUNK",
    "MAX_PROCESSES",
    "MIN_RECORDS",
    "RANGE",
    "SEQ_KEY",
    "Block",
    "Reader",
    "Source",
    "as_bytes",
    "fork_reader",
    "param",
    "plain_leaves",
    "read_range",
    "source_of",
    "split",
    "sqlite_identity",
]

#: Blocks of 2**BLOCK_BITS leaves: the unit a process folds alone.
BLOCK_BITS = 15
#: Fewer records than this after the start: one process (forking costs more than it saves).
MIN_RECORDS = 1 << 16
#: The most processes one verification uses.
MAX_PROCESSES = 4
#: Rows fetched at once.
CHUNK = 50_000

#: What precedes a canonical record's own seq: its last occurrence (a key inside
#: `detail` comes before it; inside a string the quote would be escaped).
SEQ_KEY = b',"seq":'
_SEQ_LEN = len(SEQ_KEY)
RANGE = "SELECT seq, record, hash FROM audit_log WHERE seq > ? AND seq <= ? ORDER BY seq"
#: A PostgreSQL snapshot id as `pg_export_snapshot()` writes it (put in SQL as text).
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")


def param(query: str, qmark: bool) -> str:
    """The query in the driver's parameter style (SQLite's ?, else %s)."""
    return query if qmark else query.replace("?", "%s")


def as_bytes(value: object) -> bytes:
    """A column's value as stored; tampering may have changed its SQL type."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def plain_leaves(rows: Sequence[Any], expected: int, start: int = 0) -> list[bytes]:
    """The leaf hashes of the rows from `rows[start]` on that are plainly good, up to the
    first that is not: a row is if it has seq `expected` (then the next), its record's
    leaf hash is the stored one, and the record names its own seq (its last `,"seq":`).
    A record or hash of another SQL type is taken as its bytes, as the general path
    takes it."""
    leaves: list[bytes] = []
    append = leaves.append
    for i in range(start, len(rows)):
        seq, record, stored = rows[i]
        if type(record) is not bytes or type(stored) is not bytes:
            record, stored = as_bytes(record), as_bytes(stored)
        if seq != expected:
            break
        leaf = sha256(b"\x00" + record).digest()
        at = record.rfind(SEQ_KEY)
        if leaf != stored or at < 0 or not record.startswith(b"%d," % seq, at + _SEQ_LEN):
            break
        append(leaf)
        expected += 1
    return leaves


@dataclass(frozen=True, slots=True)
class Block:
    """The leaves of seqs `first`..`first + size - 1`, folded apart."""

    first: int
    size: int
    #: The block's own compact range (one hash for a whole block).
    hashes: tuple[bytes, ...]
    #: (tree size, the block's compact range up to it) at each checkpoint inside it.
    witnesses: tuple[tuple[int, tuple[bytes, ...]], ...]


def _block(first: int, leaves: list[bytes], witnesses: Sequence[int]) -> Block:
    local = Frontier()
    seen: list[tuple[int, tuple[bytes, ...]]] = []
    base = first - 1
    lo = bisect.bisect_right(witnesses, base)
    hi = bisect.bisect_right(witnesses, base + len(leaves))
    done = 0
    for size in witnesses[lo:hi]:
        local.extend(leaves[done : size - base])
        done = size - base
        seen.append((size, tuple(local.hashes)))
    local.extend(leaves[done:])
    return Block(first, len(leaves), tuple(local.hashes), tuple(seen))


def read_range(
    cursor: Any, qmark: bool, after: int, last: int, witnesses: Sequence[int]
) -> list[Block] | None:
    """The blocks of seqs `after + 1`..`last` (`after` a multiple of 2**BLOCK_BITS), each folded,
    with its compact range at each size in `witnesses` (sorted); None when a row is not
    plainly good or the range ends short."""
    block = 1 << BLOCK_BITS
    cursor.execute(param(RANGE, qmark), (after, last))
    expected = after + 1
    blocks: list[Block] = []
    pending: list[bytes] = []
    first = after + 1
    while rows := cursor.fetchmany(CHUNK):
        leaves = plain_leaves(rows, expected)
        if len(leaves) < len(rows):
            return None
        expected += len(leaves)
        pending += leaves
        while len(pending) >= block:
            blocks.append(_block(first, pending[:block], witnesses))
            del pending[:block]
            first += block
    if expected != last + 1:
        return None
    if pending:
        blocks.append(_block(first, pending, witnesses))
    return blocks


def split(start: int, end: int, processes: int) -> tuple[int, list[tuple[int, int]]] | None:
    """How to verify the records after `start` up to `end` in `processes` processes: the
    seq up to which the verifier reads alone (to the first block boundary), and each
    process's (after, last) run of blocks, the verifier's own first: about equal shares,
    cut at the block boundary nearest to each; None for one process."""
    block = 1 << BLOCK_BITS
    processes = min(processes, MAX_PROCESSES)
    if processes < 2 or end - start < MIN_RECORDS:
        return None
    aligned = min(end, -(-start // block) * block)
    cuts = [aligned]
    for i in range(1, processes):
        share = aligned + (end - aligned) * i // processes
        at = (share + block // 2) // block * block
        if cuts[-1] < at < end:
            cuts.append(at)
    cuts.append(end)
    if len(cuts) < 3:
        return None
    return aligned, list(itertools.pairwise(cuts))


# -- the other processes --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """Where a forked reader finds the verifier's records: the engine's URL, and what
    makes sure it reads the same ones. SQLite: the file's (device, inode), which the
    reader checks on the file it opened; PostgreSQL: the verifier's snapshot
    (`pg_export_snapshot()`), which the reader's transaction imports, so it reads the
    verifier's own rows, and fails on any other server."""

    url: str
    sqlite: str | None = None
    identity: tuple[int, int] | None = None
    snapshot: str | None = None


def sqlite_identity(engine: Engine) -> tuple[int, int] | None:
    """The (device, inode) of `engine`'s SQLite file, or None (not SQLite, in memory, or
    not there)."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        return None
    if engine.url.query.get("mode") == "memory":
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def source_of(engine: Engine, cursor: Any, opened: tuple[int, int] | None) -> Source | None:
    """How forked readers reach the rows `cursor`'s transaction sees (PostgreSQL: begun
    REPEATABLE READ), or None when they cannot: a database in memory, another kind, or a
    SQLite file that is not the one there was when the verifier opened its connection
    (`opened`: `sqlite_identity` just before). On PostgreSQL the snapshot's export may
    fail (a role refused it): the transaction is then aborted, and the caller must
    start again in one process."""
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "sqlite":
        now = sqlite_identity(engine)
        if now is None or now != opened:
            return None
        return Source(url, sqlite=engine.url.database, identity=now)
    if engine.dialect.name == "postgresql":
        cursor.execute("SELECT pg_export_snapshot()")
        (snapshot,) = cursor.fetchone()
        if not _SNAPSHOT_ID.fullmatch(str(snapshot)):
            return None
        return Source(url, snapshot=str(snapshot))
    return None


@dataclass
class Reader:
    """A forked process reading one run of blocks; its answer comes through `fd`."""

    pid: int
    fd: int

    def result(self) -> list[Block] | None:
        """Its blocks, or None if it found anything not plainly good or failed (or its
        end cannot be known: SIGCHLD ignored, so the kernel reaped it)."""
        chunks = []
        try:
            while data := os.read(self.fd, 1 << 20):
                chunks.append(data)
            os.close(self.fd)
            self.fd = -1
            status = self._reap()
        except BaseException:  # interrupted: it is ended, not waited for
            self.kill()
            raise
        if status != 0:
            return None
        try:
            return _decode(b"".join(chunks))
        except (ValueError, TypeError, KeyError):
            return None

    def kill(self) -> None:
        """End it unread (the verification failed, or goes on without it), and reap it."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._reap()

    def _reap(self) -> int | None:
        """Its wait status (None: reaped by the kernel already, SIGCHLD being ignored)."""
        pid, self.pid = self.pid, -1
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return None


def fork_reader(source: Source, after: int, last: int, witnesses: Sequence[int]) -> Reader:
    """Fork a process that opens the database itself and reads one run (`read_range`)."""
    rfd, wfd = os.pipe()
    try:
        pid = os.fork()
    except BaseException:
        os.close(rfd)
        os.close(wfd)
        raise
    if pid == 0:  # pragma: no cover - the child ends in os._exit, so coverage never saves it
        code = 1
        try:
            os.close(rfd)
            payload = _encode(_read_source(source, after, last, witnesses))
            with os.fdopen(wfd, "wb") as out:
                out.write(payload)
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    return Reader(pid, rfd)


def _read_source(  # pragma: no cover - runs in the forked reader
    source: Source, after: int, last: int, witnesses: Sequence[int]
) -> list[Block] | None:
    from donjon.store import connect

    engine = connect(source.url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if source.sqlite is not None:
            cursor.execute("BEGIN")
            cursor.execute("SELECT 1 FROM audit_head")  # the file is open, and read from
            st = os.stat(source.sqlite)
            if (st.st_dev, st.st_ino) != source.identity:
                return None
        elif source.snapshot is not None:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            # Not a parameter where PostgreSQL takes it: an id `_SNAPSHOT_ID` matched whole.
            cursor.execute(f"SET TRANSACTION SNAPSHOT '{source.snapshot}'")
        else:
            return None
        qmark = engine.dialect.paramstyle == "qmark"
        return read_range(cursor, qmark, after, last, witnesses)
    finally:
        raw.rollback()
        raw.close()
        engine.dispose()


def _encode(blocks: list[Block] | None) -> bytes:
    if blocks is None:
        return b"null"
    return json.dumps([[b.first, b.size, _hex(b.hashes), _seen(b)] for b in blocks]).encode()


def _hex(hashes: Sequence[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def _seen(block: Block) -> list[object]:
    return [[size, _hex(hashes)] for size, hashes in block.witnesses]


def _decode(data: bytes) -> list[Block] | None:
    raw = json.loads(data)
    if raw is None:
        return None
    return [
        Block(
            int(first),
            int(size),
            tuple(bytes.fromhex(h) for h in hashes),
            tuple((int(s), tuple(bytes.fromhex(h) for h in hs)) for s, hs in seen),
        )
        for first, size, hashes, seen in raw
    ]
