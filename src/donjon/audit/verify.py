"""Checking the log v2: every record, every checkpoint, the signed head.

Full: each record's leaf hash is recomputed from its bytes and compared with
the stored one, seqs run 1, 2, 3, ... and each record names its own seq; the
tree's root is recomputed (a Frontier) and compared at every checkpoint in the
table and in the checkpoint file, and at the signed head. Incremental: the
same from the last checkpoint a verify passed (DATA_DIR/audit-verified.json:
its size and Frontier), reading only the records after it.

What it finds, and what it names:
- an edited, deleted, inserted or reordered record: that record (`bad_seq`);
- records rewritten together with their leaf hashes: the tree's root differs
  at a checkpoint; every record before the last good checkpoint is vouched
  for, so the first bad one lies in `bad_range` (and no finer: it says so);
- truncation: the signed head or a checkpoint covers records that are gone;
- a rollback of the database to an older copy: the checkpoint file holds a
  checkpoint beyond the database, or one the database's tree disagrees with.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from hashlib import sha256
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from donjon import boundedjson
from donjon.audit.checkpoint import SigningKey, VerifierKey
from donjon.audit.frontier import Frontier
from donjon.audit.merkle import MerkleError
from donjon.audit.tree import HEAD_FORMAT
from donjon.audit.verify_split import (
    CHUNK,
    RANGE,
    SEQ_KEY,
    Block,
    Reader,
    as_bytes,
    fork_reader,
    param,
    plain_leaves,
    read_range,
    source_of,
    split,
    sqlite_identity,
)
from donjon.audit.verify_state import load_state, save_state
from donjon.audit.witness import (
    Witnesses,
    read_file_checkpoints,
    read_head,
    read_table_checkpoints,
)
from donjon.secret import Secret

__all__ = ["VerifyResult", "verify_log"]

log = logging.getLogger("donjon.audit")

_BELOW = "SELECT COUNT(*), MAX(seq) FROM audit_log WHERE seq <= ?"
_AFTER = "SELECT seq, record, hash FROM audit_log WHERE seq > ? ORDER BY seq"


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    #: The first record found bad (its seq), when not ok and one record can be named.
    bad_seq: int | None = None
    reason: str = ""
    #: When only a root disagrees: the first bad record is in [first, last].
    bad_range: tuple[int, int] | None = None
    #: Signed checkpoints (table and file) whose roots were recomputed and matched.
    checkpoints: int = 0
    #: What is wrong but proves nothing against the records (a lost copy of a checkpoint).
    warnings: tuple[str, ...] = ()
    #: Incremental: the size verified before, whose records were not read again.
    since: int = 0
    #: How many processes read the records (more than 1: a long log split, verify_split.py).
    processes: int = 1


class _Restart(Exception):
    """The split's set-up aborted the verifier's transaction: start again in one process."""


class _Bad(Exception):
    def __init__(self, reason: str, seq: int | None, span: tuple[int, int] | None = None) -> None:
        super().__init__(reason)
        self.reason, self.seq, self.span = reason, seq, span


def _verifier(key: VerifierKey | SigningKey | Secret[bytes]) -> VerifierKey:
    if isinstance(key, VerifierKey):
        return key
    if isinstance(key, SigningKey):
        return key.verifier
    return SigningKey.from_seed(key.reveal()).verifier


def verify_log(
    engine: Engine,
    key: VerifierKey | SigningKey | Secret[bytes],
    *,
    checkpoint_file: Path | None = None,
    state_file: Path | None = None,
    incremental: bool = False,
    processes: int = 1,
) -> VerifyResult:
    """Verify the log against `key` (the verifier key, or the signing key or its seed).

    `checkpoint_file`: the append-only copy of the checkpoints, checked too.
    `state_file`: where the last verified checkpoint is kept; read when
    `incremental`, written after every successful verify.
    `processes`: how many processes may read and hash a long log's records at once
    (verify_split.py: forked, so give more than 1 only from a process with no other
    thread, as `donjon audit verify`).
    """
    vkey = _verifier(key)
    start = load_state(state_file, vkey) if incremental and state_file else Frontier()
    from_file = read_file_checkpoints(checkpoint_file, vkey)  # before the snapshot
    run = _Run(vkey, start.copy(), from_file)
    try:
        try:
            run.read(engine, processes)
        except _Restart:  # nothing was reported yet: the same verification, one process
            run = _Run(vkey, start, from_file)
            run.read(engine, 1)
        result = run.finish()
    except _Bad as bad:
        return VerifyResult(
            False,
            run.frontier.size,
            bad.seq,
            bad.reason,
            bad.span,
            run.matched,
            tuple(run.warnings),
            run.start,
        )
    if state_file is not None and run.last_verified is not None:
        try:
            save_state(state_file, vkey, run.last_verified)
        except OSError as e:  # a full disk: the log was verified all the same
            note = (
                f"{state_file.name} was not updated ({e.strerror}): the next verify reads "
                "again the records this one read"
            )
            result = replace(result, warnings=(*result.warnings, note))
    return result


class _Run:
    """One verification: the frontier grows record by record, checked at each witness."""

    def __init__(self, key: VerifierKey, start: Frontier, from_file: Witnesses) -> None:
        self.key = key
        self.start = start.size
        self.frontier = start
        self.file = from_file
        self.table = Witnesses()
        self.head: Any = None
        self.matched = 0
        self.warnings = list(from_file.warnings)
        self.last_good = start.size  # the newest size whose root a witness confirmed
        self.last_verified: Frontier | None = None
        self.below = (0, 0)  # (count, max seq) of the rows at or before `start`
        self.processes = 1  # how many read the records

    def read(self, engine: Engine, processes: int) -> None:
        """Read the head, the checkpoints and the records in one snapshot (WAL); the
        records in `processes` processes when the log is long (verify_split.py)."""
        qmark = engine.dialect.paramstyle == "qmark"
        opened = sqlite_identity(engine)  # the file the connection opens (the split's readers')
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            if engine.dialect.name == "sqlite":
                cur.execute("BEGIN")
            elif engine.dialect.name == "postgresql":  # one snapshot for every statement
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur.execute("SELECT seq, hash, mac, format, ts_ms FROM audit_head WHERE id = 1")
            row = cur.fetchone()
            if row is not None and row[3] != HEAD_FORMAT:
                raise _Bad(
                    "the log is still in the v1 format (a hash chain): start the node once "
                    "(`donjon serve`) to check and migrate it, then verify",
                    None,
                )
            self.head = read_head(row)
            cur.execute("SELECT size, root, note FROM audit_checkpoints ORDER BY size")
            self.table = read_table_checkpoints(list(cur.fetchall()), self.key)
            self._check_sources()
            if self.start:
                cur.execute(param(_BELOW, qmark), (self.start,))
                count, top = cur.fetchone() or (0, 0)
                self.below = (int(count), int(top or 0))
                self._check_start()
            else:
                self._check_none_before(cur)
            witnesses = sorted(set(self.table.roots) | set(self.file.roots))
            if not self._read_split(engine, cur, qmark, witnesses, processes, opened):
                cur.execute(param(_AFTER, qmark), (self.start,))
                while rows := cur.fetchmany(CHUNK):
                    self._rows(rows, witnesses)
            cur.close()
        finally:
            raw.rollback()
            raw.close()

    def _check_none_before(self, cur: Any) -> None:
        """No row before seq 1: the records read start after it, so one slid in below would
        go unread."""
        cur.execute("SELECT COUNT(*), MIN(seq) FROM audit_log WHERE seq < 1")
        count, first = cur.fetchone() or (0, 0)
        if count:
            raise _Bad(
                f"{count} record(s) before seq 1 (the first at {first}) were not written by Donjon",
                int(first),
            )

    def _read_split(
        self,
        engine: Engine,
        cur: Any,
        qmark: bool,
        witnesses: list[int],
        processes: int,
        opened: tuple[int, int] | None,
    ) -> bool:
        """The records read by `processes` processes at once (verify_split.py): True when
        they were all plainly good and every root matched. False when the one-process
        path must read them (a short log, one process, a database the readers cannot be
        sure to reach, or anything not plainly good), with the state as it was, so that
        path finds and reports it as it always has."""
        end = self.head.size if self.head is not None else 0
        plan = split(self.start, end, processes)
        if plan is None:
            return False
        cur.execute("SELECT MAX(seq) FROM audit_log")
        if (cur.fetchone() or (None,))[0] != end:
            return False  # rows after the signed head, or missing at its end
        try:
            source = source_of(engine, cur, opened)
        except Exception as e:  # the snapshot's export refused: the transaction is aborted
            log.info("audit verify: read again in one process (%s)", type(e).__name__)
            raise _Restart from e
        if source is None:
            return False
        aligned, runs = plan
        saved = (self.frontier.copy(), self.matched, self.last_good, self.last_verified)
        readers: list[Reader] = []
        try:
            for after, last in runs[1:]:
                readers.append(fork_reader(source, after, last, witnesses))
            if aligned > self.start:  # up to the first block boundary, read here
                cur.execute(param(RANGE, qmark), (self.start, aligned))
                while rows := cur.fetchmany(CHUNK):
                    self._rows(rows, witnesses)
            self._graft(aligned, read_range(cur, qmark, *runs[0], witnesses))
            for reader, (after, _) in zip(readers, runs[1:], strict=True):
                self._graft(after, reader.result())
            if self.frontier.size != end:
                raise _Bad("a run ended short", None)
            self.processes = len(runs)
            return True
        except (_Bad, MerkleError, OSError) as e:
            reason = e.reason if isinstance(e, _Bad) else f"{type(e).__name__}: {e}"
            log.info("audit verify: read again in one process (%s)", reason)
            self.frontier, self.matched, self.last_good, self.last_verified = saved
            return False
        finally:
            for reader in readers:
                reader.kill()

    def _graft(self, after: int, blocks: list[Block] | None) -> None:
        """The run of blocks after seq `after`, folded apart (None: not plainly good),
        joined to the tree in order, each checkpoint inside a block compared on the way
        (`_Bad` at the first that differs)."""
        if blocks is None or self.frontier.size != after:
            raise _Bad(f"the run after record {after} is not plainly good", None)
        for block in blocks:
            frontier = self.frontier
            if frontier.size != block.first - 1:
                raise _Bad(f"the block from record {block.first} does not follow", None)
            for size, hashes in block.witnesses:
                tree = frontier.copy()
                tree.graft(size - frontier.size, hashes)
                self._witness(size, tree)
            frontier.graft(block.size, block.hashes)

    def _check_sources(self) -> None:
        problems = self.table.problems + self.file.problems
        if problems:
            raise _Bad(problems[0], None)

    def _check_start(self) -> None:
        count, top = self.below
        if count != self.start or top != self.start:
            raise _Bad(
                f"records at or before {self.start} (verified before) are missing: "
                "verify in full to find which",
                None,
            )
        root = self.frontier.root()
        for source in (self.table, self.file):
            seen = source.roots.get(self.start)
            if seen is not None and seen[0] != root:
                raise _Bad(
                    f"{seen[1]} no longer matches the tree verified before at size "
                    f"{self.start}: the log was rewritten or rolled back; verify in full",
                    None,
                )

    def _rows(self, rows: Sequence[Any], witnesses: Sequence[int]) -> None:
        """`_record` for each row, with the usual case (a good row) taken in runs: their
        leaf hashes, the seqs they name and the tree, in one loop (`plain_leaves`) and
        the frontier's `extend`. Any row that is not plainly good, and each witness size
        (`witnesses`, sorted), goes through the general path, in order, so what is
        reported is the same."""
        frontier = self.frontier
        at, n = 0, len(rows)
        while at < n:
            base = frontier.size
            leaves = plain_leaves(rows, base + 1, at)
            done = 0
            lo = bisect.bisect_right(witnesses, base)
            for size in witnesses[lo : bisect.bisect_right(witnesses, base + len(leaves))]:
                frontier.extend(leaves[done : size - base])
                done = size - base
                self._witness(size)
            frontier.extend(leaves[done:])
            at += len(leaves)
            if at < n:
                seq, record, stored = rows[at]
                # Raises, unless the seq was written "007,": then the row is good.
                self._record(int(seq), as_bytes(record), as_bytes(stored))
                at += 1

    def _record(self, seq: int, record: bytes, stored: bytes) -> None:
        expected = self.frontier.size + 1
        if seq != expected:
            raise _Bad(f"record {expected} is missing (the next present is {seq})", expected)
        leaf = sha256(b"\x00" + record).digest()
        if leaf != stored:
            raise _Bad(_why(seq, record), seq)
        named = _named_seq(record)
        if named != seq:
            if named is not None and self.last_good < named < seq:
                # Rows from `named` on were moved up: the row now at `named`, which
                # claims the same seq, is the record that was slid in.
                raise _Bad(
                    f"records {named} and {seq} both claim seq {named}: a record was "
                    f"inserted at {named} and the ones after it renumbered",
                    named,
                )
            raise _Bad(f"record {seq} is the record of seq {named}: the log was reordered", seq)
        self.frontier.append(leaf)
        self._witness(seq)

    def _witness(self, size: int, tree: Frontier | None = None) -> None:
        """Compare the root at `size` (of `tree`, by default the frontier) with every
        checkpoint of that size."""
        sources = [s.roots[size] for s in (self.table, self.file) if size in s.roots]
        if not sources:
            return
        if tree is None:
            tree = self.frontier
        root = tree.root()
        for want, where in sources:
            if want != root:
                first = self.last_good + 1
                raise _Bad(
                    f"the tree of records 1..{size} does not match {where}: records "
                    f"{first}..{size} were rewritten together with their leaf hashes (or the "
                    "database was rolled back and written on); the checkpoints cannot say "
                    f"which of these records is the first bad one",
                    None,
                    (first, size),
                )
            self.matched += 1
        self.last_good = size
        self.last_verified = tree.copy()

    def finish(self) -> VerifyResult:
        count = self.frontier.size
        self._check_head(count)
        for source, what in ((self.table, "the database"), (self.file, "the checkpoint file")):
            beyond = [size for size in source.roots if size > count]
            if beyond:
                size = max(beyond)
                raise _Bad(
                    f"{what} holds a signed checkpoint of {size} records but only {count} "
                    "remain: the log was truncated, or the database rolled back to an older copy",
                    count + 1,
                )
        for size, (_, where) in sorted(self.table.roots.items()):
            if size > self.start and size not in self.file.roots and self.file.roots:
                self.warnings.append(f"{where} is not in the checkpoint file")
        for size, (_, where) in sorted(self.file.roots.items()):
            if size not in self.table.roots:
                self.warnings.append(f"{where} is not in the database (its row was deleted)")
        return VerifyResult(
            True,
            count,
            checkpoints=self.matched,
            warnings=tuple(self.warnings),
            since=self.start,
            processes=self.processes,
        )

    def _check_head(self, count: int) -> None:
        head = self.head
        if head is None:
            if count == 0 and not self.table.roots:
                return
            raise _Bad("the signed head of the log is missing", 1 if count else None)
        if not head.valid(self.key):
            raise _Bad(
                "the head's signature does not match (it was edited, or signed by another key)",
                None,
            )
        if head.size > count:
            raise _Bad(
                f"the log was truncated: the signed head says {head.size} records, {count} remain",
                count + 1,
            )
        if head.size < count:
            raise _Bad(
                f"records after the signed head ({head.size}) were not written by Donjon",
                head.size + 1,
            )
        if head.root != self.frontier.root():
            first = self.last_good + 1
            raise _Bad(
                f"the tree does not end at the signed head: records {first}..{count} were "
                "rewritten together with their leaf hashes; the head cannot say which is "
                "the first bad one",
                None,
                (first, count),
            )


def _named_seq(record: bytes) -> int | None:
    """The top-level "seq" of a canonical record: the last `,"seq":` in it (a key inside
    `detail` comes before it; inside a string the quote would be escaped)."""
    at = record.rfind(SEQ_KEY)
    if at < 0:
        return None
    end = record.find(b",", at + len(SEQ_KEY))
    try:
        return int(record[at + len(SEQ_KEY) : end])
    except ValueError:
        return None


def _why(seq: int, record: bytes) -> str:
    try:
        body: Any = boundedjson.loads(record)
    except (ValueError, boundedjson.JSONTooDeep):
        return f"record {seq} is not valid JSON: it was edited"
    if isinstance(body, dict) and body.get("seq") != seq:
        return f"record {seq} holds the record of seq {body.get('seq')}: the log was reordered"
    return f"record {seq} does not match its leaf hash: it was edited"
