"""Denials aggregated per source and window, on a real audit log in a real SQLite file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from donjon.audit import AuditEvent, AuditLog, verify_log
from donjon.audit.denials import OVERFLOW, DenialLog
from donjon.secret import Secret
from donjon.store import connect, create_schema
from donjon.store.tables import audit_log

KEY = Secret(b"k" * 32)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = connect(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(e)
    return e


def _records(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            json.loads(bytes(r))
            for r in conn.execute(select(audit_log.c.record).order_by(audit_log.c.seq)).scalars()
        ]


def _denial(
    n: int, path: str = "/v1/keys", actor: str = "anonymous", action: str = "auth.denied"
) -> AuditEvent:
    return AuditEvent(
        actor,
        action,
        path,
        "denied",
        {
            "request_id": f"r{n}",
            "reason": "invalid or revoked credentials",
            "client": "-",
            "method": "GET",
        },
    )


def _run(engine: Engine, body: Any) -> None:
    async def main() -> None:
        log = AuditLog(engine, KEY)
        log.start()
        try:
            await body(log)
        finally:
            log.stop()

    asyncio.run(main())


def test_first_denial_is_written_at_once_and_the_rest_when_the_window_closes(
    engine: Engine,
) -> None:
    """One record at once, one aggregate at the window's end, and the counts add up exactly."""
    clock = Clock()

    async def body(log: AuditLog) -> None:
        denials = DenialLog(log, 60, 100, clock)
        for n in range(250):
            await denials.deny(_denial(n, f"/p{n % 20}"), "10.0.0.1")
        assert len(_records(engine)) == 1
        await denials.flush()  # the window is still open: nothing more
        assert len(_records(engine)) == 1
        clock.now += 60
        await denials.flush()

    _run(engine, body)
    first, aggregate = _records(engine)
    assert first["detail"]["request_id"] == "r0" and first["detail"]["count"] == 1
    assert aggregate["detail"]["aggregated"] is True
    assert aggregate["detail"]["count"] == 249
    assert aggregate["detail"]["last_request_id"] == "r249"
    assert sum(aggregate["detail"]["paths"].values()) == 249
    assert len(aggregate["detail"]["paths"]) <= 9  # 8 paths and "(other)"
    assert verify_log(engine, KEY).ok


def test_a_denial_after_the_window_opens_a_new_one(engine: Engine) -> None:
    """The next denial after a window ends closes it and is itself written at once."""
    clock = Clock()

    async def body(log: AuditLog) -> None:
        denials = DenialLog(log, 10, 100, clock)
        for n in range(3):
            await denials.deny(_denial(n), "10.0.0.1")
        clock.now += 11
        await denials.deny(_denial(3), "10.0.0.1")

    _run(engine, body)
    counts = [(r["detail"]["count"], r["detail"].get("request_id")) for r in _records(engine)]
    assert counts == [(1, "r0"), (2, None), (1, "r3")]


def test_sources_actors_and_actions_are_counted_apart(engine: Engine) -> None:
    """Two clients, or a 401 and a 403 from one client, each get their own first record."""

    async def body(log: AuditLog) -> None:
        denials = DenialLog(log, 60, 100, Clock())
        await denials.deny(_denial(0), "10.0.0.1")
        await denials.deny(_denial(1), "10.0.0.2")
        await denials.deny(_denial(2, actor="key:a", action="authz.denied"), "10.0.0.1")
        await denials.deny(_denial(3), "10.0.0.1")
        await denials.stop()

    _run(engine, body)
    records = _records(engine)
    assert [r["detail"].get("request_id") for r in records[:3]] == ["r0", "r1", "r2"]
    assert records[3]["detail"]["count"] == 1 and records[3]["detail"]["aggregated"]
    assert len(records) == 4


def test_tracked_sources_are_bounded_and_overflow_is_counted(engine: Engine) -> None:
    """Past max_sources, new clients share one overflow record; no denial goes uncounted."""

    async def body(log: AuditLog) -> None:
        denials = DenialLog(log, 60, 4, Clock())
        for n in range(1000):
            await denials.deny(_denial(n), f"10.0.{n // 250}.{n % 250}")
            assert denials.tracked <= 5
        await denials.stop()

    _run(engine, body)
    records = _records(engine)
    assert sum(r["detail"]["count"] for r in records) == 1000
    assert len(records) == 6  # 4 clients' first denials, the overflow's first and its aggregate
    assert records[-1]["detail"]["client"] == OVERFLOW
    assert records[-1]["detail"]["count"] == 995


def test_stop_writes_every_open_window(engine: Engine) -> None:
    """A node that stops flushes what it counted: nothing is lost."""

    async def body(log: AuditLog) -> None:
        denials = DenialLog(log, 3600, 100, Clock())
        denials.start()
        for n in range(10):
            await denials.deny(_denial(n), "10.0.0.1")
        await denials.stop()

    _run(engine, body)
    assert [r["detail"]["count"] for r in _records(engine)] == [1, 9]


def test_window_zero_writes_a_record_per_denial(engine: Engine) -> None:
    """DONJON_AUDIT_DENIAL_WINDOW_S=0 turns aggregation off."""

    async def body(log: AuditLog) -> None:
        denials = DenialLog(log, 0, 100, Clock())
        for n in range(5):
            await denials.deny(_denial(n), "10.0.0.1")
        await denials.stop()

    _run(engine, body)
    assert [r["detail"]["request_id"] for r in _records(engine)] == [f"r{n}" for n in range(5)]


def test_a_failed_flush_keeps_the_count_for_the_next(engine: Engine) -> None:
    """If the aggregate cannot be written, it is kept and written by the next flush."""
    clock = Clock()

    async def body(log: AuditLog) -> None:
        denials = DenialLog(log, 10, 100, clock)
        for n in range(5):
            await denials.deny(_denial(n), "10.0.0.1")
        clock.now += 11
        real = log.record
        calls = 0

        async def failing(event: AuditEvent, entry: Any = None) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("disk full")

        log.record = failing  # type: ignore[method-assign,assignment]  # a failing writer
        with pytest.raises(RuntimeError):
            await denials.flush()
        assert calls == 1
        log.record = real  # type: ignore[method-assign]  # the writer back
        await denials.flush()

    _run(engine, body)
    assert [r["detail"]["count"] for r in _records(engine)] == [1, 4]
