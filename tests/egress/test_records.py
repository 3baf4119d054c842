"""Egress decisions aggregated per call, on a real audit log in a real SQLite file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from donjon.audit import AuditLog
from donjon.egress.records import MAX_KEYS, OTHER, Decision, EgressRecords
from donjon.secret import Secret
from donjon.store import connect, create_schema
from donjon.store.tables import audit_log


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _records(path: Path, coro: Any) -> list[dict[str, Any]]:
    engine = connect(f"sqlite:///{path / 'a.db'}")
    create_schema(engine)
    audit = AuditLog(engine, Secret(b"k" * 32))
    audit.start()
    try:
        asyncio.run(coro(audit))
    finally:
        audit.stop()
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log.c.record).order_by(audit_log.c.seq)).scalars()
        out = [json.loads(bytes(r)) for r in rows]
    engine.dispose()
    return out


def _denied(destination: str) -> Decision:
    return Decision("fn", 2, "req", destination, "denied", "not granted (permissions.egress)")


def test_a_long_call_writes_its_counts_per_window(tmp_path: Path) -> None:
    """Counts of a call still running are written when their window closes, then restart."""
    clock = Clock()

    async def go(audit: AuditLog) -> None:
        records = EgressRecords(audit, window_s=60.0, clock=clock)
        for _ in range(5):
            await records.note("c1", _denied("x:443"))
        await records.flush()  # window still open: nothing
        clock.now += 61
        await records.flush()
        await records.note("c1", _denied("x:443"))
        await records.end_call("c1")

    out = _records(tmp_path, go)
    assert [r["detail"]["count"] for r in out] == [1, 4, 1]
    assert sum(r["detail"]["count"] for r in out) == 6


def test_many_destinations_fold_into_one_key(tmp_path: Path) -> None:
    """Past MAX_KEYS destinations in one call, the rest count under (other)."""

    async def go(audit: AuditLog) -> None:
        records = EgressRecords(audit)
        for i in range(MAX_KEYS + 10):
            await records.note("c1", _denied(f"h{i}.example:443"))
        await records.end_call("c1")

    out = _records(tmp_path, go)
    assert len(out) == MAX_KEYS + 2  # each first at once, then (other)'s aggregate
    assert out[-2]["detail"]["destination"] == f"h{MAX_KEYS}.example:443"
    assert out[-1]["detail"]["destination"] == OTHER and out[-1]["detail"]["count"] == 9
    assert sum(r["detail"]["count"] for r in out) == MAX_KEYS + 10
