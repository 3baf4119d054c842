"""Audit records as the learned detectors read them, made by hand (tests of monitor/)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from donjon.audit.log import AuditEvent, CommittedRecord
from donjon.monitor.detector import Detector
from donjon.monitor.findings import Finding


class Records:
    """Numbers records as a log would, one seq after the other."""

    def __init__(self) -> None:
        self._seq: Iterator[int] = itertools.count(1)

    def call(
        self,
        now: float,
        target: str = "f@1",
        actor: str = "key:k1",
        *,
        outcome: str = "ok",
        duration_ms: float = 50.0,
        memory_mb: int = 128,
        client: str | None = "192.0.2.10",
    ) -> CommittedRecord:
        detail: dict[str, Any] = {
            "request_id": "r",
            "duration_ms": duration_ms,
            "trigger": "invoke",
            "memory_mb": memory_mb,
        }
        if client is not None:
            detail["client"] = client
        event = AuditEvent(actor, "function.invoke", target, outcome, detail)
        return CommittedRecord(next(self._seq), now, event)

    def record(self, now: float, event: AuditEvent) -> CommittedRecord:
        return CommittedRecord(next(self._seq), now, event)

    def event(self, now: float, action: str, target: str, outcome: str = "ok") -> CommittedRecord:
        return CommittedRecord(
            next(self._seq), now, AuditEvent("key:admin", action, target, outcome)
        )


def feed(detector: Detector, record: CommittedRecord, now: float | None = None) -> list[Finding]:
    """Observe and tick, as the monitor would."""
    at = record.ts if now is None else now
    return detector.observe(record, at) + detector.tick(at)
