"""What one small audit transaction costs the writer, stage by stage (issue 14, targets 1 and 4).

At the warm path's 2,000 requests a second the writer commits groups of about four
records. This runs the writer's own work for such groups on one thread, with no
socket and no second thread: `AuditLog.prepare` of G records, then `store`'s
steps one by one (the tree's root, the head's Ed25519 signature, the rows'
INSERTs, the head's UPDATE and COMMIT, which is SQLite's WAL write and fsync),
T transactions on a file in DIR (the data disk by default: /tmp here), and
prints each stage's CPU per transaction, user and system apart
(getrusage(RUSAGE_THREAD)), and its wall time. The records carry no invocation
log (the warm path's do: add their sealing to the prepare row).

    python bench/audit_group.py [--group 4] [--transactions 2000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from donjon.audit import AuditEvent, AuditLog
from donjon.audit.entry import encode_entry
from donjon.audit.tree import sign_head
from donjon.secret import Secret
from donjon.store import connect, create_schema

EVENT = AuditEvent(
    "key:0123456789abcdef",
    "function.invoke",
    "bench-warm@1",
    "ok",
    {"request_id": "0123456789abcdef", "duration_ms": 0.512, "trigger": "invoke"},
)
STAGES = ("prepare", "root + sign", "inserts", "head + COMMIT")


def _now() -> tuple[float, float]:
    return time.thread_time(), time.perf_counter()


def run(
    group: int, transactions: int, where: Path
) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """Seconds of CPU and wall time per transaction, by stage; and of user and system
    time per transaction over the run."""
    with tempfile.TemporaryDirectory(dir=where) as d:
        engine = connect(f"sqlite:///{Path(d) / 'a.db'}")
        create_schema(engine)
        log = AuditLog(engine, Secret(os.urandom(32)))
        log.hold_connection()
        raw, sql, key = log._raw, log._sql, log.signing_key
        entries = [encode_entry(EVENT) for _ in range(group)]
        totals = {s: [0.0, 0.0] for s in STAGES}

        def add(stage: str, a: tuple[float, float], b: tuple[float, float]) -> None:
            t = totals[stage]
            t[0] += b[0] - a[0]
            t[1] += b[1] - a[1]

        before = resource.getrusage(resource.RUSAGE_THREAD)
        for _ in range(transactions):
            t0 = _now()
            chunk = log.prepare(entries, log._frontier.copy())
            t1 = _now()
            root = chunk.frontier.root()
            head = sign_head(key, chunk.frontier.size, root, int(chunk.now * 1000))
            t2 = _now()
            sql.insert(raw, chunk.params, chunk.logs, chunk.uses)
            t3 = _now()
            sql.finish(raw, (chunk.frontier.size, root, head.signature, head.ts_ms), None)
            log._frontier = chunk.frontier
            t4 = _now()
            add("prepare", t0, t1)
            add("root + sign", t1, t2)
            add("inserts", t2, t3)
            add("head + COMMIT", t3, t4)
        after = resource.getrusage(resource.RUSAGE_THREAD)
        log._raw = None
        raw.close()
        engine.dispose()
    n = transactions
    user = (after.ru_utime - before.ru_utime) / n
    system = (after.ru_stime - before.ru_stime) / n
    return {s: (t[0] / n, t[1] / n) for s, t in totals.items()}, (user, system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(
        f"{time.strftime('%H:%M:%S', time.gmtime())} UTC load {load:.2f} | "
        f"{args.transactions} transactions of {args.group} records in {args.dir}, one thread"
    )
    result, (user, system) = run(args.group, args.transactions, args.dir)
    cpu = sum(r[0] for r in result.values())
    wall = sum(r[1] for r in result.values())
    print(f"  {'stage':<14} {'CPU µs':>8} {'wall µs':>8}  (per transaction)")
    for stage, (c, w) in [*result.items(), ("all", (cpu, wall))]:
        print(f"  {stage:<14} {c * 1e6:8.1f} {w * 1e6:8.1f}")
    print(
        f"  the run: user {user * 1e6:.1f} + system {system * 1e6:.1f} µs a transaction; "
        f"CPU per record {cpu * 1e6 / args.group:.1f} µs"
    )


if __name__ == "__main__":
    main()
