"""Audit log throughput and verify time, beside SQLite's own floor on the same disk.

Donjon side: `AuditLog` on a SQLite file opened with `donjon.store.connect`
(WAL, synchronous=FULL), appending the record the invoke path appends:
- `record_now`: one record per transaction (the synchronous path);
- `_write` in batches: what the group-commit writer does with a full queue;
- `record` from many coroutines at once: the group-commit path the gateway uses,
  through the writer process (`start(process=True)`, as `donjon serve` runs it),
  with the CPU per record of the loop's process and of the writer process
  (/proc/PID/stat: a figure the machine's load moves less than the rate), and,
  for comparison, through the in-process writer thread it replaced;
- `verify_log` over N records built quickly through `_append` in large batches
  (one pre-encoded entry: the fill is not what is measured), as `donjon audit verify`
  runs it (split over the CPUs: audit/verify_split.py).

Floor: the sqlite3 module alone, same pragmas, inserting pre-encoded rows of
the same size in batches of 1000 (the target's baseline: `executemany` of
tuples of bytes, the module's usual way) and in batches of as many rows as
there are waiters (the largest group commit they can make), and a bare
`SELECT` scan for verify. For comparison, the same 1000-row commits bound the
way the writer binds them (audit/rawsql.py, audit/rows.py: multi-row INSERTs of
256, the BLOBs as bytearrays), which costs sqlite3 less per row.

The group-commit path and the two floors it is read against run in `ROUNDS`
alternated rounds, and the median of each is reported (each round's figure too,
under `rounds`): all three wait on this disk's fsync, which moves from run to run.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from donjon.audit import AuditEvent, AuditLog, verify_log
from donjon.audit.entry import encode_entry
from donjon.secret import Secret
from donjon.store import connect, create_schema

EVENT = AuditEvent(
    "key:0123456789abcdef",
    "function.invoke",
    "bench-warm@1",
    "ok",
    {"request_id": "0123456789abcdef", "duration_ms": 0.512, "trigger": "invoke"},
)


#: Alternated rounds of the group-commit path and its floors (the median of each is kept;
#: the CPU per record is the last round's).
ROUNDS = 3


def _open(path: Path) -> tuple[Any, AuditLog, Secret[bytes]]:
    engine = connect(f"sqlite:///{path}")
    create_schema(engine)
    key = Secret(os.urandom(32))
    return engine, AuditLog(engine, key), key


def _floor_rows(db: Path, batch: int, batches: int, record: bytes) -> float:
    """records/s of sqlite3 alone: executemany + commit per batch, same pragmas."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE t (seq INTEGER PRIMARY KEY, record BLOB NOT NULL, hash BLOB NOT NULL)"
    )
    digest = bytes(32)
    seq = 0
    t0 = time.perf_counter()
    for _ in range(batches):
        rows = [(seq + i + 1, record, digest) for i in range(batch)]
        seq += batch
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return batch * batches / elapsed


#: sqlite3 alone's multi-row INSERT of n rows (seq, record, hash), as the writer's.
BLOCK_SQL = {
    n: "INSERT INTO t VALUES " + ", ".join(["(?, ?, ?)"] * n)
    for n in (256, 128, 64, 32, 16, 8, 4, 2, 1)
}


def insert_blocks(conn: sqlite3.Connection, params: list[Any]) -> None:
    """Insert the flat (seq, record, hash) `params` into table t as audit/rawsql.py
    does: blocks of 256 rows, then powers of two."""
    rows, at, block = len(params) // 3, 0, 256
    while at < rows:
        while block > rows - at:
            block >>= 1
        conn.execute(BLOCK_SQL[block], params[at * 3 : (at + block) * 3])
        at += block


def _floor_rows_blocks(db: Path, batch: int, batches: int, record: bytes) -> float:
    """records/s of sqlite3 alone bound as the writer binds: multi-row INSERTs of 256
    rows (then powers of two) with bytearray BLOBs, one commit per batch, same pragmas."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE t (seq INTEGER PRIMARY KEY, record BLOB NOT NULL, hash BLOB NOT NULL)"
    )
    digest = bytearray(32)
    blob = bytearray(record)
    seq = 0
    t0 = time.perf_counter()
    for _ in range(batches):
        params: list[Any] = []
        for i in range(batch):
            params += (seq + i + 1, blob, digest)
        seq += batch
        conn.execute("BEGIN")
        insert_blocks(conn, params)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return batch * batches / elapsed


def _floor_scan(db: Path) -> float:
    """Seconds to read every row of the floor table once, in seq order, no hashing."""
    conn = sqlite3.connect(db)
    t0 = time.perf_counter()
    cur = conn.execute("SELECT seq, record, hash FROM t ORDER BY seq")
    while cur.fetchmany(20000):
        pass
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _concurrent(
    log: AuditLog, waiters: int, total: int, process: bool, cpu: dict[str, float] | None = None
) -> float:
    """records/s; with `cpu`, the CPU µs per record of this process and of the writer's."""
    per = total // waiters

    async def waiter() -> None:
        for _ in range(per):
            await log.record(EVENT)

    log.start(process=process)
    writer = log._remote.pid if log._remote is not None else None
    try:
        here0 = _cpu_s(os.getpid())
        there0 = 0.0 if writer is None else _cpu_s(writer)
        t0 = time.perf_counter()
        await asyncio.gather(*(waiter() for _ in range(waiters)))
        rate = per * waiters / (time.perf_counter() - t0)
        if cpu is not None:
            cpu["loop_us"] = (_cpu_s(os.getpid()) - here0) * 1e6 / (per * waiters)
            if writer is not None:
                cpu["writer_us"] = (_cpu_s(writer) - there0) * 1e6 / (per * waiters)
        return rate
    finally:
        log.stop()


def run(
    workdir: Path,
    verify_records: int,
    concurrent_total: int,
    sync_calls: int,
    waiters: int,
    run_loop: Any,
) -> dict[str, Any]:
    """All audit figures; `verify_records` records are built for the verify."""
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"waiters": waiters, "verify_records": verify_records}
    engine, log, key = _open(workdir / "audit.db")
    record_size = len(log._encode(1, time.time(), EVENT))

    t0 = time.perf_counter()
    for _ in range(sync_calls):
        log.record_now(EVENT)
    out["record_now_rps"] = sync_calls / (time.perf_counter() - t0)

    batch, batches = 1000, 20
    t0 = time.perf_counter()
    for _ in range(batches):
        log._write([(EVENT, None)] * batch)
    out["batch_rps"] = batch * batches / (time.perf_counter() - t0)
    out["floor_blocks_rps"] = _floor_rows_blocks(
        workdir / "floor-blocks.db", batch, batches, b"x" * record_size
    )

    # The group-commit path (target 4) against its floors: ROUNDS of each, alternated, the
    # median of each. All are bound by this disk's fsync, which moved the floor alone by
    # 1.7x from one run of the bench to the next (docs/performance.md, the eighteenth round).
    floors: list[float] = []
    waiter_floors: list[float] = []
    groups: list[float] = []
    cpu: dict[str, float] = {}
    for i in range(ROUNDS):
        floors.append(_floor_rows(workdir / f"floor-{i}.db", batch, batches, b"x" * record_size))
        waiter_floors.append(
            _floor_rows(
                workdir / f"floor-waiters-{i}.db",
                waiters,
                max(1, 20_000 // waiters),
                b"x" * record_size,
            )
        )
        groups.append(run_loop(lambda: _concurrent(log, waiters, concurrent_total, True, cpu)))
    out["floor_batch_rps"] = statistics.median(floors)
    out["floor_waiters_rps"] = statistics.median(waiter_floors)
    out["group_rps"] = statistics.median(groups)
    out["rounds"] = {"floor_batch": floors, "floor_waiters": waiter_floors, "group": groups}
    out["group_loop_cpu_us"] = cpu["loop_us"]
    out["group_writer_cpu_us"] = cpu["writer_us"]
    out["group_thread_rps"] = run_loop(
        lambda: _concurrent(log, waiters, concurrent_total // 2, False)
    )

    # Fill up to `verify_records` in large batches, then verify the whole chain.
    have = log.size
    big = 20000
    entry = encode_entry(EVENT)
    t0 = time.perf_counter()
    while have < verify_records:
        n = min(big, verify_records - have)
        log._append([entry] * n)
        have += n
    out["fill_s"] = time.perf_counter() - t0
    # As `donjon audit verify` runs it: split over the CPUs where this tree can.
    kw: dict[str, Any] = {}
    if "processes" in inspect.signature(verify_log).parameters:
        kw["processes"] = len(os.sched_getaffinity(0))
    t0 = time.perf_counter()
    result = verify_log(engine, key, **kw)
    out["verify_s"] = time.perf_counter() - t0
    out["verify_processes"] = getattr(result, "processes", 1)
    out["verify_ok"] = result.ok and result.records == verify_records
    engine.dispose()

    _floor_rows(workdir / "scan.db", big, verify_records // big, b"x" * record_size)
    out["floor_scan_s"] = _floor_scan(workdir / "scan.db")
    return out
