"""verify_log with the records split over processes (audit/verify_split.py), on real files.

test_tamper.py runs every kind of tampering both ways; here: that a good log is really
read by the other processes and never again by the verifier, that what a split verify
saves for the next incremental one is what one process saves, and the plan's edges.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from donjon.audit import AuditEvent, AuditLog, SigningKey, verify_log, verify_split
from donjon.audit import verify as verify_mod
from donjon.audit.frontier import Frontier
from donjon.audit.merkle import leaf_hash
from donjon.config import AuditSettings
from donjon.store import connect, create_schema
from postgres_support import PostgresServer, postgres_server

__all__ = ["postgres_server"]  # the fixture, used by name below

CADENCE = AuditSettings(checkpoint_records=7, checkpoint_s=3600)


class Spied:
    """What a verification read on the verifier's own path, and what it forked."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows_here = 0
        self.forked: list[tuple[int, int]] = []
        rows, fork = verify_mod._Run._rows, verify_split.fork_reader

        def counting_rows(run: Any, batch: Any, witnesses: Any) -> None:
            self.rows_here += len(batch)
            rows(run, batch, witnesses)

        def counting_fork(source: Any, after: int, last: int, witnesses: Any) -> Any:
            self.forked.append((after, last))
            return fork(source, after, last, witnesses)

        monkeypatch.setattr(verify_mod._Run, "_rows", counting_rows)
        monkeypatch.setattr(verify_mod, "fork_reader", counting_fork)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setattr(verify_split, "BLOCK_BITS", 3)  # blocks of 8 records
    monkeypatch.setattr(verify_split, "MIN_RECORDS", 0)
    made = connect(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(made)
    yield made
    made.dispose()


def _fill(engine: Engine, key: SigningKey, path: Path, n: int) -> None:
    log = AuditLog(engine, key, settings=CADENCE, checkpoint_file=path / "cp.jsonl")
    for i in range(n):
        log.record_now(AuditEvent("key:a", "function.invoke", f"f{i}", "ok", {"i": i}))
    log.stop()


def _verify(engine: Engine, key: SigningKey, path: Path, processes: int, **kw: Any) -> Any:
    return verify_log(
        engine,
        key.verifier,
        checkpoint_file=path / "cp.jsonl",
        state_file=path / f"state-{processes}.json",
        processes=processes,
        **kw,
    )


def test_a_good_log_is_read_by_the_other_processes(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Split over three, a good log's records are read in three runs of whole blocks, two
    by forked processes; the verifier's own one-process path reads none of them, and the
    result is the one-process result."""
    key = SigningKey.generate()
    _fill(engine, key, tmp_path, 61)
    alone = _verify(engine, key, tmp_path, 1)
    spied = Spied(monkeypatch)
    split = _verify(engine, key, tmp_path, 3)
    assert split.ok and split.processes == 3 and replace(split, processes=1) == alone
    assert split.checkpoints == alone.checkpoints > 10  # every checkpoint, inside blocks too
    assert spied.forked == [(24, 40), (40, 61)]  # the verifier reads (0, 24] itself
    assert spied.rows_here == 0
    state = [json.loads((tmp_path / f"state-{n}.json").read_text()) for n in (1, 3)]
    for saved in state:
        del saved["verified_at"]
    assert state[0] == state[1]


def test_an_incremental_verify_from_inside_a_block(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started from a verified size inside a block, the verifier reads up to the block's
    end itself, the rest is split, and the saved tree is the one-process one."""
    key = SigningKey.generate()
    _fill(engine, key, tmp_path, 21)
    for n in (1, 3):
        assert _verify(engine, key, tmp_path, n).ok
    _fill(engine, key, tmp_path, 40)  # 61 records; the state is at 21
    spied = Spied(monkeypatch)
    results = [_verify(engine, key, tmp_path, n, incremental=True) for n in (3, 1)]
    assert replace(results[0], processes=1) == results[1]
    assert results[0].ok and results[0].since == 21 and results[0].processes == 3
    assert spied.forked[:2] == [(40, 48), (48, 61)]
    assert spied.rows_here == 3 + 40  # 22..24 in the split run; all 40 alone
    state = [json.loads((tmp_path / f"state-{n}.json").read_text()) for n in (1, 3)]
    assert state[0]["hashes"] == state[1]["hashes"] and state[0]["size"] == 61


def test_a_bad_row_in_a_forked_run_is_reported_by_the_one_process_path(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record edited in the last run: the forked reader declines, and the verifier reads
    the whole log itself and names the record as it always has."""
    key = SigningKey.generate()
    _fill(engine, key, tmp_path, 61)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE audit_log SET record = replace(record, '\"ok\"', '\"no\"') WHERE seq = 57"
        )
    spied = Spied(monkeypatch)
    result = _verify(engine, key, tmp_path, 3)
    assert not result.ok and result.bad_seq == 57 and "edited" in result.reason
    assert spied.forked == [(24, 40), (40, 61)] and spied.rows_here == 61


@pytest.mark.slow
def test_on_postgresql_the_runs_are_read_over_connections_of_their_own(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the forked readers open their own connections from the engine's URL
    and import the verifier's snapshot: a good log is split as on SQLite (its rows come as
    bytes), with the same result; a failure that aborts the verifier's transaction while
    the split is set up starts the verification again in one process."""
    monkeypatch.setattr(verify_split, "BLOCK_BITS", 5)
    monkeypatch.setattr(verify_split, "MIN_RECORDS", 0)
    engine = connect(postgres_server.url)
    try:
        create_schema(engine)
        key = SigningKey.generate()
        log = AuditLog(engine, key, settings=AuditSettings(checkpoint_records=50))
        log._write(
            [(AuditEvent("key:a", "function.invoke", f"f{i}", "ok", {}), None) for i in range(200)]
        )
        log.stop()
        alone = verify_log(engine, key.verifier, processes=1)
        spied = Spied(monkeypatch)
        split = verify_log(engine, key.verifier, processes=3)
        assert split.ok and replace(split, processes=1) == alone and split.records == 200
        assert spied.forked == [(64, 128), (128, 200)] and spied.rows_here == 0

        def aborting(engine: Engine, cursor: Any, opened: Any) -> None:
            cursor.execute("SELECT donjon_no_such_function()")  # the transaction is aborted

        monkeypatch.setattr(verify_mod, "source_of", aborting)
        assert verify_log(engine, key.verifier, processes=3) == alone
    finally:
        engine.dispose()


def test_a_reader_that_fails_is_no_answer(tmp_path: Path) -> None:
    """A forked reader whose database cannot be opened, or that is another file than the
    verifier's, exits non-zero or declines: no blocks."""
    gone = verify_split.Source("sqlite:////nonexistent/dir/a.db", "/nonexistent/dir/a.db", (0, 0))
    assert verify_split.fork_reader(gone, 0, 8, []).result() is None
    other = tmp_path / "b.db"
    create_schema(connect(f"sqlite:///{other}"))
    st = other.stat()
    moved = verify_split.Source(f"sqlite:///{other}", str(other), (st.st_dev, st.st_ino + 1))
    assert verify_split.fork_reader(moved, 0, 8, []).result() is None


def test_a_reader_that_exits_non_zero_is_no_answer_whatever_it_wrote() -> None:
    """Blocks written by a process that then failed are not taken."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(wfd, b"[]")
        os._exit(3)
    os.close(wfd)
    assert verify_split.Reader(pid, rfd).result() is None


def test_a_database_in_memory_is_read_by_one_process() -> None:
    """No reader can open another process's database in memory: no source, no split."""
    made = connect("sqlite://")
    raw = made.raw_connection()
    try:
        opened = verify_split.sqlite_identity(made)
        assert opened is None and verify_split.source_of(made, raw.cursor(), opened) is None
    finally:
        raw.close()
        made.dispose()


def test_a_file_replaced_since_the_verifier_opened_it_is_not_split(engine: Engine) -> None:
    """Readers open the file by its path: if the path no longer names the file the
    verifier opened, they would read another log, so there is no source."""
    opened = verify_split.sqlite_identity(engine)
    assert opened is not None
    raw = engine.raw_connection()
    try:
        assert verify_split.source_of(engine, raw.cursor(), opened) is not None
        moved = (opened[0], opened[1] + 1)
        assert verify_split.source_of(engine, raw.cursor(), moved) is None
    finally:
        raw.close()


def test_with_sigchld_ignored_the_readers_are_not_trusted_and_nothing_raises(
    engine: Engine, tmp_path: Path
) -> None:
    """With SIGCHLD ignored the kernel reaps the readers, so how they ended is unknown: the
    verification is made in one process, with the same result."""
    key = SigningKey.generate()
    _fill(engine, key, tmp_path, 61)
    alone = _verify(engine, key, tmp_path, 1)
    before = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        result = _verify(engine, key, tmp_path, 3)
    finally:
        signal.signal(signal.SIGCHLD, before)
    assert result == alone and result.processes == 1


def test_a_split_that_cannot_be_set_up_starts_again_in_one_process(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The readers' source failing (on PostgreSQL, a snapshot's export refused, which
    aborts the transaction) does not fail the verification: it starts again in one
    process, from the same start."""
    key = SigningKey.generate()
    _fill(engine, key, tmp_path, 21)
    assert _verify(engine, key, tmp_path, 1).ok
    (tmp_path / "state-3.json").write_text((tmp_path / "state-1.json").read_text())
    _fill(engine, key, tmp_path, 40)
    alone = _verify(engine, key, tmp_path, 1, incremental=True)

    def refused(*args: Any) -> None:
        raise RuntimeError("permission denied for function pg_export_snapshot")

    monkeypatch.setattr(verify_mod, "source_of", refused)
    result = _verify(engine, key, tmp_path, 3, incremental=True)
    assert result == alone and result.ok and result.since == 21 and result.processes == 1
    full = _verify(engine, key, tmp_path, 3)
    assert full.ok and full.records == 61 and full.processes == 1


def test_a_fork_that_fails_is_read_in_one_process_and_leaves_nothing(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second fork fails (EAGAIN): the first reader is killed and reaped, no pipe is
    left open, and the log is verified by one process as if never split."""
    key = SigningKey.generate()
    _fill(engine, key, tmp_path, 61)
    alone = _verify(engine, key, tmp_path, 1)
    forked: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        if forked:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    fds = len(os.listdir("/proc/self/fd"))
    result = _verify(engine, key, tmp_path, 3)
    assert replace(result, processes=1) == alone and result.processes == 1
    assert len(forked) == 1 and not Path(f"/proc/{forked[0]}").exists()
    assert len(os.listdir("/proc/self/fd")) == fds


def test_records_of_another_sql_type_verify_the_same_split_or_not(
    engine: Engine, tmp_path: Path
) -> None:
    """Records retyped TEXT (the same bytes) are taken as their bytes on both paths."""
    key = SigningKey.generate()
    _fill(engine, key, tmp_path, 61)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET record = CAST(record AS TEXT)")
        (kind,) = conn.exec_driver_sql("SELECT typeof(record) FROM audit_log LIMIT 1").one()
    assert kind == "text"
    split, alone = (_verify(engine, key, tmp_path, n) for n in (3, 1))
    assert alone.ok and split.processes == 3 and replace(split, processes=1) == alone


def test_the_wire_form_keeps_every_block() -> None:
    """What a forked reader writes is read back as the same blocks."""
    leaves = [leaf_hash(b"%d" % i) for i in range(13)]
    blocks = [verify_split._block(1, leaves[:8], [3, 8]), verify_split._block(9, leaves[8:], [])]
    assert verify_split._decode(verify_split._encode(blocks)) == blocks
    assert verify_split._decode(verify_split._encode(None)) is None
    tree = Frontier()
    for block in blocks:
        tree.graft(block.size, block.hashes)
    assert tree == Frontier.from_leaves(leaves)
    assert blocks[0].witnesses[0] == (3, tuple(Frontier.from_leaves(leaves[:3]).hashes))


@pytest.mark.parametrize(
    ("start", "end", "processes", "plan"),
    [
        (0, 61, 3, (0, [(0, 24), (24, 40), (40, 61)])),  # shares of 20: cut at 24 and 40
        (21, 61, 3, (24, [(24, 40), (40, 48), (48, 61)])),
        (0, 61, 9, (0, [(0, 16), (16, 32), (32, 48), (48, 61)])),  # at most MAX_PROCESSES
        (0, 12, 3, (0, [(0, 8), (8, 12)])),  # no more processes than blocks
        (0, 8, 3, None),  # one block
        (0, 61, 1, None),  # one CPU
        (60, 61, 3, None),  # one record left
    ],
)
def test_the_plan_splits_at_block_boundaries(
    start: int, end: int, processes: int, plan: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs of blocks of 8, cut at block boundaries, covering (start, end] in order."""
    monkeypatch.setattr(verify_split, "BLOCK_BITS", 3)
    monkeypatch.setattr(verify_split, "MIN_RECORDS", 0)
    assert verify_split.split(start, end, processes) == plan


def test_a_short_log_is_read_by_one_process() -> None:
    """Below MIN_RECORDS no process is forked, whatever the CPUs."""
    assert verify_split.split(0, verify_split.MIN_RECORDS - 1, os.cpu_count() or 8) is None
