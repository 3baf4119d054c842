"""`verify_log` over a long log, in one process and split (issue 14, target 4's verify).

Fills a SQLite audit log with N records (the invoke path's record, through `_append` in
large batches, as audit_phase.py does), then times, in alternated rounds:

- a bare scan of the same rows with the sqlite3 module (the floor: reading is all it does);
- `verify_log` in one process (`processes=1`);
- `verify_log` as `donjon audit verify` runs it (`processes` = the CPUs this process
  may use: a long log's records split, audit/verify_split.py).

    python bench/audit_verify.py [--records 1000000] [--rounds 3] [--keep DIR]

Prints each round and the medians, and the ratios against the scan and against 5 s for a
million records (the target). Run another tree's Donjon with that tree's interpreter: a
tree whose `verify_log` takes no `processes` is timed in one process only.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from audit_phase import EVENT

from donjon.audit import AuditLog, verify_log
from donjon.audit.entry import encode_entry
from donjon.secret import Secret
from donjon.store import connect, create_schema


def fill(path: Path, records: int) -> tuple[Secret[bytes], float]:
    engine = connect(f"sqlite:///{path}")
    create_schema(engine)
    key = Secret(os.urandom(32))
    log = AuditLog(engine, key)
    entry = encode_entry(EVENT)
    started = time.perf_counter()
    while log.size < records:
        log._append([entry] * min(20_000, records - log.size))
    log.stop()
    engine.dispose()
    return key, time.perf_counter() - started


def scan(path: Path) -> float:
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    cur = conn.execute("SELECT seq, record, hash FROM audit_log ORDER BY seq")
    while cur.fetchmany(50_000):
        pass
    conn.close()
    return time.perf_counter() - started


def verify(path: Path, key: Secret[bytes], records: int, processes: int | None) -> float:
    """One verify_log's seconds (`processes` None: a tree that cannot split)."""
    engine = connect(f"sqlite:///{path}")
    kw: dict[str, Any] = {} if processes is None else {"processes": processes}
    started = time.perf_counter()
    result = verify_log(engine, key, **kw)
    took = time.perf_counter() - started
    engine.dispose()
    if not (result.ok and result.records == records):
        raise SystemExit(f"verify failed: {result}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="a directory for the log")
    args = parser.parse_args()
    splits = "processes" in inspect.signature(verify_log).parameters
    cpus = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        path = Path(tmp) / "audit.db"
        key, filled = fill(path, args.records)
        print(
            f"{args.records:,} records filled in {filled:.1f} s; {cpus} CPUs; "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        kinds: dict[str, list[float]] = {"bare scan": [], "verify, one process": []}
        if splits:
            kinds[f"verify, split ({min(cpus, 4)} processes)"] = []
        for round_ in range(1, args.rounds + 1):
            figures = [scan(path), verify(path, key, args.records, 1 if splits else None)]
            if splits:
                figures.append(verify(path, key, args.records, cpus))
            said = []
            for (kind, seen), took in zip(kinds.items(), figures, strict=True):
                seen.append(took)
                said.append(f"{kind} {took:.2f} s")
            print(f"round {round_}: " + ", ".join(said))
    scale = 1_000_000 / args.records
    floor = statistics.median(kinds["bare scan"])
    for kind, seen in kinds.items():
        took = statistics.median(seen)
        print(
            f"{kind:32} median {took:6.2f} s ({took * scale:5.2f} s per 1M: "
            f"{took / floor:4.2f}x the scan, {took * scale / 5:4.2f}x the 5 s target)"
        )


if __name__ == "__main__":
    main()
