"""Shared pieces of the monitor's tests: a real audit log on a SQLite file, a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from donjon.audit.log import AuditLog, CommittedRecord
from donjon.monitor.findings import Finding, Subject
from donjon.secret import Secret
from donjon.store import connect, create_schema

KEY = Secret(b"k" * 32)


def make_engine(tmp_path: Path) -> Engine:
    engine = connect(f"sqlite:///{tmp_path / 'm.db'}")
    create_schema(engine)
    return engine


def make_log(engine: Engine) -> AuditLog:
    return AuditLog(engine, KEY)


@dataclass
class FakeClock:
    """A clock a test moves by hand."""

    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class EveryDenial:
    """A detector that finds every `auth.denied` record (the engine's tests)."""

    name: str = "every_denial"
    seen: list[int] = field(default_factory=list)
    ticks: int = 0

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        self.seen.append(record.seq)
        if record.event.action != "auth.denied":
            return []
        subject = Subject("source", str(record.event.detail.get("client", "?")))
        return [
            Finding(
                "auth.test", self.name, "high", subject, "a denial", (record.seq,), now, {"n": 1}
            )
        ]

    def tick(self, now: float) -> list[Finding]:
        self.ticks += 1
        return []
