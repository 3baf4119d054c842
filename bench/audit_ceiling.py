"""The audit writer's own work beside sqlite3 alone, CPU per record, one thread (target 4).

What one Python process pays per record, 1000-record transactions, WAL and
`synchronous=FULL` everywhere, measured as CPU time (`time.process_time`, which
the machine's load moves far less than the rate):

- sqlite3 alone, `executemany` of tuples of bytes (`audit_phase`'s floor, the
  target's baseline);
- sqlite3 alone, 256-row INSERTs of bytearrays (the way the writer binds);
- the least a writer does: the records filled and leaf-hashed (`audit/rows.py`)
  and inserted the same way, no tree, no signature, no socket;
- the writer's `prepare` + `store` (the tree, the signed head and the
  checkpoints in the transaction), still without the socket, the second thread
  or the loop's process.

    python bench/audit_ceiling.py [--records 100000] [--rounds 3]

If the last two already cost more per record than the floor, the append through
the node (which adds the loop's process, the socket and smaller transactions)
cannot reach the floor's rate on one core; how close it gets to 0.5x depends on
the two processes overlapping on two.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import audit_phase

from donjon.audit.entry import to_wire, ts_tail
from donjon.audit.rows import fill_rows

BATCH = 1000


def _cpu_us(records: int, work: Callable[[], object]) -> float:
    c0 = time.process_time()
    work()
    return (time.process_time() - c0) / records * 1e6


def _minimal(db: Path, records: int, wire: list[bytes]) -> None:
    """Fill, leaf-hash and insert (256-row INSERTs), one commit per BATCH records."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE t (seq INTEGER PRIMARY KEY, record BLOB NOT NULL, hash BLOB NOT NULL)"
    )
    seq = 0
    for _ in range(records // BATCH):
        params = fill_rows(wire, seq, ts_tail(time.time())).params
        seq += BATCH
        conn.execute("BEGIN")
        audit_phase.insert_blocks(conn, params)
        conn.execute("COMMIT")
    conn.close()


def one_round(workdir: Path, records: int) -> dict[str, float]:
    engine, log, _ = audit_phase._open(workdir / "audit.db")
    log.hold_connection()
    record = b"x" * len(log._encode(1, time.time(), audit_phase.EVENT))
    wire = [to_wire(audit_phase.EVENT, None)] * BATCH
    batches = records // BATCH

    def writer() -> None:
        for _ in range(batches):
            log.store([log.prepare(wire, log._frontier.copy())])

    out = {
        "floor_executemany": _cpu_us(
            records, lambda: audit_phase._floor_rows(workdir / "f.db", BATCH, batches, record)
        ),
        "floor_blocks": _cpu_us(
            records,
            lambda: audit_phase._floor_rows_blocks(workdir / "fb.db", BATCH, batches, record),
        ),
        "fill_hash_insert": _cpu_us(records, lambda: _minimal(workdir / "m.db", records, wire)),
        "prepare_store": _cpu_us(records, writer),
    }
    log.stop()
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("CPU per record, µs (1000-record transactions, one thread):")
    print("  sqlite3 executemany | sqlite3 256-row INSERTs | fill+hash+insert | prepare+store")
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="donjon-audit-ceiling-") as tmp:
            r = one_round(Path(tmp), args.records)
        print(
            f"  round {i + 1}: {r['floor_executemany']:.2f} | {r['floor_blocks']:.2f}"
            f" | {r['fill_hash_insert']:.2f} | {r['prepare_store']:.2f}"
        )


if __name__ == "__main__":
    main()
