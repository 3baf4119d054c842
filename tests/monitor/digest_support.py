"""What every detector finds, and what the learned ones hold, over one recorded stream.

The digest of bench/monitor_digest.py, and of `test_examine_golden.py`: the stream of
`test_examine_equivalence.py` (24 simulated hours of calls, deploys and key creations
with anomalies injected, and denials, runtime-policy blocks, OOM kills and egress
refusals mixed in) fed to the node's rules and learned detectors plainly (each record
to each detector that reads it, ticking every 5 s of record time) and through the
engine (`Monitor`, batches of 1-16 records, a clock that runs ahead of the records,
ticks at random), with a cap on subjects. A run's digest covers its findings, in
order, and the detectors' state afterwards (each table's subjects in their order, its
evictions, every window's values and statistics, every pair).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections import deque
from typing import Any

from donjon.audit.log import CommittedRecord
from donjon.config import MonitorSettings
from donjon.monitor.baselines import DurationDetector, ErrorRateDetector
from donjon.monitor.detector import Detector
from donjon.monitor.firstseen import FirstSeenDetector
from donjon.monitor.rates import call_rate, cost
from donjon.monitor.robust import RobustWindow
from donjon.monitor.service import rule_detectors
from monitor.test_examine_equivalence import _alert_seen, _Log, _seen, alerting
from monitor.test_trace import LEARNING_S

__all__ = ["CAPS", "digest", "runs"]


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
    monitor = alerting(log, detectors, lambda: now[0])
    rng = random.Random(seed)  # noqa: S311 - a seeded simulation, not a secret
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


def runs(records: list[CommittedRecord], cap: int, pairs: int) -> dict[str, Any]:
    """The plain run and the engine's with `cap` subjects: (findings, state) of each."""
    out: dict[str, Any] = {}
    detectors = _detectors(cap, pairs)
    out[f"plain, cap {cap}"] = [_plain(records, detectors), _state(detectors)]
    detectors = _detectors(cap, pairs)
    found = asyncio.run(_engine(records, detectors, seed=cap))
    out[f"engine, cap {cap}"] = [found, _state(detectors)]
    return out


def digest(found: list[Any], state: list[Any]) -> str:
    """The first 16 hex digits of the run's findings' and state's SHA-256."""
    text = json.dumps([found, state], sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()[:16]
