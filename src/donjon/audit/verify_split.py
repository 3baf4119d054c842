"""Verify's records read and hashed by several processes at once (issue 14, target 4).

Verifying is CPU-bound: each record's leaf hash, its checks and the tree's fold,
about 6 µs a record in Python on a slow core beside SQLite's 2 µs to read it (a
million records took 7.9 s on one core). The tree splits without changing a
hash: from a leaf index that is a multiple of a power of two, the leaves after it
form perfect subtrees of the whole tree, so their compact range can be folded
apart and grafted on (`Frontier.graft`). So the records after the verified start
are cut at blocks of `BLOCK` leaves, each process reads its run of blocks over its
own connection and returns, per block, the block's compact range and the compact
range at each checkpoint's size inside it; the verifier grafts them in order and
compares the roots at each checkpoint as it goes.

Only what is plainly good is split. A process that meets any row that is not (a
seq out of order, a leaf hash that differs, a record naming another seq), a range
that ends short, or a process that fails, and any root that differs, sends the
whole verification back to the one-process path over the verifier's own snapshot,
so a bad log is reported exactly as it always was: which record, which range.
The one-process path also runs for small logs (`MIN_RECORDS`) and on one CPU.

Each process reads in its own snapshot. The log is append-only and the ranges stop
at the signed head's size, so a snapshot taken later holds the same rows unless
someone rewrote them meanwhile; whatever a process reads must still hash to the
signed checkpoints and head, so a split run that passes has read records that
the signatures vouch for.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from donjon.audit.frontier import Frontier

__all__ = [
    "BLOCK_BITS",
    "CHUNK",
    "MIN_RECORDS",
    "RANGE",
    "Block",
    "Reader",
    "fork_reader",
    "param",
    "plain_leaves",
    "read_range",
    "split",
]

#: Blocks of 2**BLOCK_BITS leaves: the unit a process folds alone.
BLOCK_BITS = 15
#: Fewer records than this after the start: one process (forking costs more than it saves).
MIN_RECORDS = 1 << 16
#: The most processes one verification uses.
MAX_PROCESSES = 4
#: Rows fetched at once.
CHUNK = 50_000

_SEQ_KEY = b',"seq":'
_SEQ_LEN = len(_SEQ_KEY)
RANGE = "SELECT seq, record, hash FROM audit_log WHERE seq > ? AND seq <= ? ORDER BY seq"


def param(query: str, qmark: bool) -> str:
    """The query in the driver's parameter style (SQLite's ?, else %s)."""
    return query if qmark else query.replace("?", "%s")


def plain_leaves(rows: Sequence[Any], expected: int, start: int = 0) -> list[bytes]:
    """The leaf hashes of the rows from `rows[start]` on that are plainly good, up to the
    first that is not: a row is if it has seq `expected` (then the next), its record's
    leaf hash is the stored one, and the record names its own seq (its last `,"seq":`,
    which a key inside `detail` precedes and a string cannot hold unescaped)."""
    leaves: list[bytes] = []
    append = leaves.append
    for seq, record, stored in itertools.islice(rows, start, None):
        if type(record) is not bytes or type(stored) is not bytes or seq != expected:
            break
        leaf = sha256(b"\x00" + record).digest()
        at = record.rfind(_SEQ_KEY)
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
    hashes: list[bytes]
    #: (tree size, the block's compact range up to it) at each checkpoint inside it.
    witnesses: list[tuple[int, list[bytes]]]


def _block(first: int, leaves: list[bytes], witnesses: Sequence[int]) -> Block:
    local = Frontier()
    seen: list[tuple[int, list[bytes]]] = []
    base = first - 1
    lo = bisect.bisect_right(witnesses, base)
    hi = bisect.bisect_right(witnesses, base + len(leaves))
    done = 0
    for size in witnesses[lo:hi]:
        local.extend(leaves[done : size - base])
        done = size - base
        seen.append((size, list(local.hashes)))
    local.extend(leaves[done:])
    return Block(first, len(leaves), list(local.hashes), seen)


def read_range(
    cursor: Any, qmark: bool, after: int, last: int, witnesses: Sequence[int]
) -> list[Block] | None:
    """The blocks of seqs `after + 1`..`last` (`after` a multiple of `BLOCK`), each folded,
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


@dataclass
class Reader:
    """A forked process reading one run of blocks; its answer comes through `fd`."""

    pid: int
    fd: int

    def result(self) -> list[Block] | None:
        """Its blocks, or None if it found anything not plainly good or failed."""
        chunks = []
        try:
            while data := os.read(self.fd, 1 << 20):
                chunks.append(data)
        finally:
            os.close(self.fd)
            self.fd = -1
            _, status = os.waitpid(self.pid, 0)
        if status != 0:
            return None
        try:
            return _decode(b"".join(chunks))
        except (ValueError, TypeError, KeyError):
            return None

    def kill(self) -> None:
        """End it unread (the verification failed before its answer was needed)."""
        if self.fd < 0:
            return
        os.close(self.fd)
        self.fd = -1
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def fork_reader(url: str, after: int, last: int, witnesses: Sequence[int]) -> Reader:
    """Fork a process that opens the database at `url` itself and reads one run."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child ends in os._exit, so coverage never saves it
        code = 1
        try:
            os.close(rfd)
            payload = _encode(_read_url(url, after, last, witnesses))
            with os.fdopen(wfd, "wb") as out:
                out.write(payload)
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    return Reader(pid, rfd)


def _read_url(  # pragma: no cover - runs in the forked reader
    url: str, after: int, last: int, witnesses: Sequence[int]
) -> list[Block] | None:
    from donjon.store import connect

    engine = connect(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            cursor.execute("BEGIN")
        return read_range(cursor, engine.dialect.paramstyle == "qmark", after, last, witnesses)
    finally:
        raw.rollback()
        raw.close()
        engine.dispose()


def _encode(blocks: list[Block] | None) -> bytes:
    if blocks is None:
        return b"null"
    return json.dumps([[b.first, b.size, _hex(b.hashes), _seen(b)] for b in blocks]).encode()


def _hex(hashes: list[bytes]) -> list[str]:
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
            [bytes.fromhex(h) for h in hashes],
            [(int(s), [bytes.fromhex(h) for h in hs]) for s, hs in seen],
        )
        for first, size, hashes, seen in raw
    ]
