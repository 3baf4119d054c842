"""What every detector finds, and what the learned ones hold, over one recorded stream.

A change that only makes the monitor cheaper must leave both as they were. This
feeds the stream of `tests/monitor/test_examine_equivalence.py` (24 simulated
hours of calls, deploys and key creations with anomalies injected, and denials,
runtime-policy blocks, OOM kills and egress refusals mixed in) to the node's
rules and learned detectors, twice per cap on subjects: plainly (each record to
each detector that reads it, ticking every 5 s of record time) and through the
engine (`Monitor`, batches of 1-16 records, a clock that runs ahead of the
records, ticks at random). Caps of 7 and 3 subjects (2 and 4 pairs for
`first_seen`) make the tables evict. It prints a digest of each run's findings
and of the detectors' state afterwards (each table's subjects in their order,
its evictions, every window's values and statistics, every pair), and can write
the whole of it as JSON.

    python bench/monitor_digest.py [--json FILE]

Run it with each tree's interpreter (`/other/.venv/bin/python bench/monitor_digest.py`):
the stream comes from this tree's tests, the detectors from the tree installed.
Equal digests: the same findings, in the same order, and the same state.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sys
from collections import deque
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from donjon.audit.log import CommittedRecord
from donjon.config import MonitorSettings
from donjon.monitor.baselines import DurationDetector, ErrorRateDetector
from donjon.monitor.detector import Detector
from donjon.monitor.engine import Monitor
from donjon.monitor.firstseen import FirstSeenDetector
from donjon.monitor.rates import call_rate, cost
from donjon.monitor.robust import RobustWindow
from donjon.monitor.service import rule_detectors
from monitor.test_examine_equivalence import _alert_seen, _Log, _seen, _stream
from monitor.test_trace import LEARNING_S

#: (subjects per baseline, pairs per principal for first_seen).
CAPS = ((5000, 1000), (7, 4), (3, 2))


def _dump(value: Any) -> Any:
    """A JSON form of a detector's state (floats by repr: exact)."""
    if hasattr(value, "evicted") and hasattr(value, "items"):  # a bounded table
        return {"evicted": value.evicted, "items": [[str(k), _dump(v)] for k, v in value.items()]}
    if isinstance(value, RobustWindow):
        fields = ("_values", "_ordered", "_stats", "_stale", "learned")
        return {name: _dump(getattr(value, name)) for name in fields}
    if isinstance(value, deque | list | tuple):
        return [_dump(v) for v in value]
    if isinstance(value, float):
        return repr(value)
    if value is None or isinstance(value, int | str | bool):
        return value
    slots = getattr(type(value), "__slots__", ())
    if slots:
        return {name: _dump(getattr(value, name)) for name in slots}
    return repr(value)


def _detectors(cap: int, pairs: int) -> list[Detector]:
    return [
        *rule_detectors(MonitorSettings(learning_s=LEARNING_S)),
        call_rate(max_subjects=cap),
        ErrorRateDetector(max_subjects=cap),
        DurationDetector(max_subjects=cap),
        cost(max_subjects=cap),
        FirstSeenDetector(LEARNING_S, max_principals=cap, max_pairs=pairs),
    ]


def _state(detectors: list[Detector]) -> list[Any]:
    out: list[Any] = []
    for d in detectors:
        if isinstance(d, FirstSeenDetector):
            out.append([d.name, _dump(d.profiles), d.started])
        elif hasattr(d, "series"):
            out.append([d.name, _dump(d.series)])
    return out


def _plain(records: list[CommittedRecord], detectors: list[Detector]) -> list[Any]:
    found: list[Any] = []
    next_tick = records[0].ts
    for record in records:
        while next_tick <= record.ts:
            found += [_seen(f) for d in detectors for f in d.tick(next_tick)]
            next_tick += 5.0
        action = record.event.action
        for d in detectors:
            if action in getattr(d, "actions", (action,)):
                found += [_seen(f) for f in d.observe(record, record.ts + 0.5)]
    return found


async def _engine(
    records: list[CommittedRecord], detectors: list[Detector], seed: int
) -> list[Any]:
    log = _Log()
    now = [records[0].ts]
    monitor = Monitor(
        log,  # type: ignore[arg-type]  # a stand-in AuditLog: listeners and alerts only
        detectors,
        dict.fromkeys((d.name for d in detectors), "alert"),
        clock=lambda: now[0],
        dedup_s=0.0,
        tick_s=3600.0,
    )
    monitor.attach(asyncio.get_running_loop())
    rng = random.Random(seed)
    try:
        i = 0
        while i < len(records):
            size = rng.randint(1, 16)
            now[0] = records[min(i + size, len(records)) - 1].ts + rng.choice((0.0, 0.3, 5.0))
            log.commit(records[i : i + size])
            i += size
            await monitor.settle()
            if rng.random() < 0.05:
                await monitor.tick()
    finally:
        await monitor.close()
    return [_alert_seen(e) for e in log.alerts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write every finding and the state here")
    args = parser.parse_args()
    records = _stream()
    runs: dict[str, Any] = {}
    for cap, pairs in CAPS:
        detectors = _detectors(cap, pairs)
        runs[f"plain, cap {cap}"] = [_plain(records, detectors), _state(detectors)]
        detectors = _detectors(cap, pairs)
        found = asyncio.run(_engine(records, detectors, seed=cap))
        runs[f"engine, cap {cap}"] = [found, _state(detectors)]
    for name, (found, state) in runs.items():
        text = json.dumps([found, state], sort_keys=True).encode()
        print(f"{name}: {len(found)} findings, digest {hashlib.sha256(text).hexdigest()[:16]}")
    if args.json:
        args.json.write_text(json.dumps(runs, sort_keys=True))


if __name__ == "__main__":
    main()
