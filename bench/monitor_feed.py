"""The monitor's CPU per call record on the loop, the engine included (issue 14, target 1).

`gateway_cpu.py pieces` times the detectors alone (each one's `observe`, in
turn). What the gateway's loop pays per committed record is more: the batch
handed over by the audit writer (`call_soon_threadsafe`), the feed task's
wake-up, the routing by action, each record's examination, and then the
detectors. This times that whole path on the node's own `Monitor` and default
detectors: batches of warm call records (one key, one function, as the
bench's warm load sends) are handed to `Monitor._on_commit` as the writer
does, and the process CPU per record is measured once the feed has examined
them. Every detector is in `learn` mode, so a finding costs its detection and
no alert record (there is no audit log here).

    python bench/monitor_feed.py [--batch 8] [--records 40000] [--repeat 5] [--keys 1]
    python bench/monitor_feed.py --instructions [--python PY] [--records 10000] [--keys 1]

`--keys N` spreads the calls over N keys in turn (each call's key the next one's: no
call has the subjects of the one before it, the learned baselines' worst case).

Runs against any installed tree (use that tree's interpreter): it uses only the
engine's hand-over (`_on_commit`) and `settle`, which every tree since the
monitor has. Prints microseconds per record, best of `--repeat`.

`--instructions` counts instead of timing (the load of a shared machine moves
CPU time, not instruction counts): it runs the feed twice under `valgrind
--tool=callgrind`, once with the warm-up round alone and once with one more
round, and prints the difference per record. For measurement only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


class _NoLog:
    """The audit log's listener hook, and nothing else (nothing is raised in learn mode)."""

    def add_listener(self, listener: Any) -> None:
        pass


def _batches(records: list[Any], size: int, keys: int = 1) -> list[Any]:
    from dataclasses import replace

    from donjon.audit.log import CommittedBatch, CommittedRecord

    if keys > 1:  # the calls' keys in turn
        records = [
            CommittedRecord(r.seq, r.ts, replace(r.event, actor=f"key:k{r.seq % keys}"))
            for r in records
        ]
    out = []
    for i in range(0, len(records), size):
        chunk = records[i : i + size]
        ts = chunk[0].ts  # one commit, one time: as the writer stamps a batch
        out.append(CommittedBatch(tuple(CommittedRecord(r.seq, ts, r.event) for r in chunk), 0.001))
    return out


async def _feed(batch_size: int, n: int, repeat: int, keys: int = 1) -> float:
    from gateway_cpu import _records

    from donjon.config import MonitorSettings
    from donjon.monitor.engine import Monitor
    from donjon.monitor.service import default_detectors

    detectors = default_detectors(MonitorSettings())
    monitor = Monitor(
        _NoLog(),  # type: ignore[arg-type]  # a stand-in AuditLog: the listener hook only
        detectors,
        dict.fromkeys((d.name for d in detectors), "learn"),
        tick_s=3600.0,
    )
    monitor.attach(asyncio.get_running_loop())
    records = _records(n * (max(repeat, 1) + 1))  # as many whatever is timed (--instructions)
    batches = _batches(records, batch_size, keys)
    per = n // batch_size
    best = float("inf")
    try:
        for round_ in range(repeat + 1):  # the first round warms the series up
            chunk = batches[round_ * per : (round_ + 1) * per]
            start = time.process_time()
            for i in range(0, len(chunk), 64):  # as the writer hands batches over
                for batch in chunk[i : i + 64]:
                    monitor._on_commit(batch)
                await monitor.settle()
            spent = time.process_time() - start
            if round_:
                best = min(best, spent / (len(chunk) * batch_size) * 1e6)
    finally:
        await monitor.close()
    return best if repeat else 0.0


def _instructions(python: str, batch: int, n: int, keys: int = 1) -> float:
    """Instructions per record: a run with one round more than another, under callgrind."""
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in (0, 1):
            out = Path(tmp) / f"callgrind.{repeat}"
            argv = [python, __file__, "--batch", str(batch), "--records", str(n)]
            argv += ["--repeat", str(repeat), "--keys", str(keys)]
            subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
                check=True,
                capture_output=True,
            )
            found = re.search(r"^(?:totals|summary):\s*(\d+)", out.read_text(), re.MULTILINE)
            if found is None:
                raise RuntimeError(f"no totals in {out}")
            totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="records per committed batch")
    parser.add_argument("--records", type=int, default=40_000, help="records per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds timed (best kept)")
    parser.add_argument("--keys", type=int, default=1, help="keys calling, in turn")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under callgrind"
    )
    parser.add_argument("--python", default=sys.executable, help="the tree's interpreter")
    args = parser.parse_args()
    if args.instructions:
        count = _instructions(args.python, args.batch, args.records, args.keys)
        print(
            f"monitor feed, batches of {args.batch}, {args.keys} key(s):"
            f" {count:,.0f} instructions per call record"
        )
        return
    us = asyncio.run(_feed(args.batch, args.records, args.repeat, args.keys))
    if args.json:
        print(json.dumps({"batch": args.batch, "us_per_record": us}))
    else:
        print(f"monitor feed, batches of {args.batch}: {us:.2f} us of CPU per call record")


if __name__ == "__main__":
    main()
