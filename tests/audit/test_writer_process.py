"""The audit writer in its own process (audit/remote.py, audit/writer.py), as the node runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from donjon.audit import AuditError, AuditEvent, AuditLog, verify_log
from donjon.audit.log import CommittedBatch, InvocationLog
from donjon.audit.merkle import leaf_hash
from donjon.secret import Secret
from donjon.store import connect, create_schema
from donjon.vault.logseal import LogSealer, SealedLog
from donjon.vault.master import MasterKey

KEY = Secret(bytes(range(32)))


def _event(i: int, action: str = "function.invoke") -> AuditEvent:
    return AuditEvent("key:a", action, "f@1", "ok", {"request_id": f"r{i}", "i": i})


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = connect(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(e)
    return e


def _db(engine: Engine) -> sqlite3.Connection:
    assert engine.url.database is not None
    return sqlite3.connect(engine.url.database)


def _writer_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_record_is_durable_and_canonical_before_record_returns(engine: Engine) -> None:
    """Once record() returns, another connection reads the row, with its leaf hash."""
    log = AuditLog(engine, KEY)

    async def go() -> list[tuple[Any, ...]]:
        log.start(process=True)
        try:
            assert log._remote is not None and log._remote.pid != os.getpid()
            await log.record(_event(1))
            with _db(engine) as conn:  # before stop(): the writer process committed it
                return conn.execute("SELECT seq, record, hash FROM audit_log").fetchall()
        finally:
            log.stop()

    rows = asyncio.run(go())
    assert len(rows) == 1
    seq, record, stored = rows[0]
    assert bytes(stored) == leaf_hash(bytes(record))
    assert bytes(record) == log._encode(seq, __import__("json").loads(record)["ts"], _event(1))
    assert verify_log(engine, KEY).ok


@pytest.mark.slow
def test_records_in_flight_together_share_a_commit(engine: Engine) -> None:
    """200 concurrent records take fewer than 200 transactions; each seq once, in order."""
    log = AuditLog(engine, KEY)
    batches: list[CommittedBatch] = []
    log.add_listener(batches.append)

    async def go() -> None:
        log.start(process=True)
        try:
            await asyncio.gather(*(log.record(_event(i)) for i in range(200)))
        finally:
            log.stop()

    asyncio.run(go())
    seqs = [r.seq for b in batches for r in b.records]
    assert seqs == list(range(1, 201))
    assert len(batches) < 200
    assert sorted(r.event.detail["i"] for b in batches for r in b.records) == list(range(200))


def test_listeners_see_each_batch_in_order_before_its_callers_resume(engine: Engine) -> None:
    """A caller resumes only after a listener saw its record; batches never go backwards."""
    log = AuditLog(engine, KEY)
    seen: set[int] = set()
    last = [0]
    order_ok = [True]

    def listener(batch: CommittedBatch) -> None:
        if batch.records[0].seq != last[0] + 1:
            order_ok[0] = False
        last[0] = batch.records[-1].seq
        seen.update(r.event.detail["i"] for r in batch.records)

    log.add_listener(listener)
    early: list[int] = []

    async def one(i: int) -> None:
        await log.record(_event(i))
        if i not in seen:
            early.append(i)

    async def go() -> None:
        log.start(process=True)
        try:
            for wave in range(5):
                await asyncio.gather(*(one(wave * 100 + i) for i in range(100)))
        finally:
            log.stop()

    asyncio.run(go())
    assert early == []
    assert order_ok[0] and last[0] == 500


@pytest.mark.slow  # two writer processes and a bounded load
@pytest.mark.parametrize(
    ("waiters", "each"),
    [(1, 600), (128, 100)],
    ids=["inline", "two-stage"],  # groups of one (committed by the reading thread); large
)
def test_a_killed_writer_fails_its_callers_loses_nothing_accepted_and_is_restarted(
    engine: Engine, waiters: int, each: int
) -> None:
    """SIGKILL of the writer mid-load: callers get AuditError, every record whose
    record() returned is stored, a new writer takes over and the log verifies."""
    log = AuditLog(engine, KEY)
    committed = [0]
    log.add_listener(lambda b: committed.__setitem__(0, committed[0] + len(b.records)))
    accepted: list[int] = []
    failed: list[BaseException] = []

    async def waiter(w: int) -> None:
        for k in range(each):
            i = w * 1000 + k
            try:
                await log.record(_event(i))
            except AuditError as e:
                failed.append(e)
                return
            accepted.append(i)

    async def go() -> int:
        log.start(process=True)
        try:
            assert log._remote is not None
            first = log._remote.pid
            assert first is not None
            tasks = [asyncio.ensure_future(waiter(w)) for w in range(waiters)]
            for _ in range(6000):  # until some batches are committed (bounded)
                if committed[0] >= 300:
                    break
                await asyncio.sleep(0.01)
            os.kill(first, signal.SIGKILL)
            await asyncio.gather(*tasks)
            for _ in range(1200):  # a new writer, after reading the tree again (bounded)
                try:
                    await log.record(_event(999_999))
                    break
                except AuditError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("no new audit writer took over")
            assert log._remote.pid not in (None, first)
            return first
        finally:
            log.stop()

    first = asyncio.run(go())
    assert failed, "the writer was killed before it could fail anyone: load too small"
    assert all("could not be written" in str(e) for e in failed)
    with _db(engine) as conn:
        stored = {
            __import__("json").loads(r)["detail"]["i"]
            for (r,) in conn.execute("SELECT record FROM audit_log")
        }
    assert set(accepted) <= stored
    assert 999_999 in stored
    assert not _writer_alive(first)
    assert verify_log(engine, KEY).ok


@pytest.mark.slow  # a node-like process of its own, killed
def test_the_writer_exits_when_its_node_is_killed(tmp_path: Path, engine: Engine) -> None:
    """SIGKILL of the process that started the writer: the writer ends by itself, and
    every record acknowledged before stays."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from donjon.audit import AuditEvent, AuditLog
        from donjon.secret import Secret
        from donjon.store import connect
        log = AuditLog(connect({str(engine.url)!r}), Secret(bytes(range(32))))
        async def go():
            log.start(process=True)
            for i in range(50):
                await log.record(AuditEvent("key:a", "x", "t", "ok", {{"i": i}}))
            print(log._remote.pid, flush=True)
            await asyncio.sleep(600)
        asyncio.run(go())
        """
    )
    node = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert node.stdout is not None
        writer = int(node.stdout.readline())
        node.kill()
        node.wait()
        _wait_for(lambda: not _writer_alive(writer), "the writer to exit")
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        if node.stdout is not None:
            node.stdout.close()
    with _db(engine) as conn:
        assert conn.execute("SELECT COUNT(*) FROM audit_log").fetchone() == (50,)
    assert verify_log(engine, KEY).ok


@pytest.mark.slow
def test_invocation_logs_are_sealed_by_the_writer_and_grant_uses_indexed(engine: Engine) -> None:
    """The writer process seals an invocation log's output under the log subkey it was
    given over its socket; the grant_uses index gets the record's uses."""
    sealer = LogSealer(MasterKey(os.urandom(32)))
    log = AuditLog(engine, KEY, sealer)
    event = AuditEvent(
        "key:a", "function.invoke", "f@1", "ok", {"request_id": "r1", "secrets_read": ["db"]}
    )
    out = InvocationLog("f", 1, "r1", "ok", "printed\nline", 1.5, 2048)

    async def go() -> None:
        log.start(process=True)
        try:
            await log.record(event, out)
        finally:
            log.stop()

    asyncio.run(go())
    with _db(engine) as conn:
        row = conn.execute(
            "SELECT output, sealed, wrapped_key, kek_id, duration_ms, memory_kb"
            " FROM invocation_logs"
        ).fetchone()
        uses = conn.execute("SELECT function, kind, name, seq FROM grant_uses").fetchall()
    assert row[0] == "" and b"printed" not in bytes(row[1])
    assert sealer.open("f", "r1", SealedLog(bytes(row[1]), bytes(row[2]), row[3])) == out.output
    assert (row[4], row[5]) == (1.5, 2048)
    assert uses == [("f", "secret", "db", 1)]


@pytest.mark.slow
def test_a_record_that_is_not_json_fails_only_its_caller(engine: Engine) -> None:
    """A detail that cannot be encoded raises AuditError for its caller; others commit."""
    log = AuditLog(engine, KEY)

    async def go() -> tuple[BaseException | None, ...]:
        log.start(process=True)
        try:
            bad = AuditEvent("key:a", "x", "t", "ok", {"blob": object()})
            return await asyncio.gather(
                log.record(_event(1)),
                log.record(bad),
                log.record(_event(2)),
                return_exceptions=True,
            )
        finally:
            log.stop()

    results = asyncio.run(go())
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], AuditError)
    assert log.size == 2


@pytest.mark.slow
def test_two_calls_logged_under_one_request_id_fail_nobody(engine: Engine) -> None:
    """Two calls whose logs carry the same request id, committed together with a third:
    every record commits and every caller returns; the second log row is dropped, not
    the transaction. Before, the unique index on request_id failed the whole batch, and
    every caller in it got AuditError (review of the eighteenth round)."""
    log = AuditLog(engine, KEY)

    def call(i: int, request_id: str) -> tuple[AuditEvent, InvocationLog]:
        event = AuditEvent("key:a", "function.invoke", "f@1", "ok", {"request_id": request_id})
        return event, InvocationLog("f", 1, request_id, "ok", f"printed by {i}", 1.0, 1024)

    async def go() -> list[BaseException | None]:
        log.start(process=True)
        try:
            calls = [call(1, "same"), call(2, "same"), call(3, "other")]
            return await asyncio.gather(
                *(log.record(event, out) for event, out in calls), return_exceptions=True
            )
        finally:
            log.stop()

    assert asyncio.run(go()) == [None, None, None]
    assert log.size == 3
    with _db(engine) as conn:
        rows = conn.execute("SELECT request_id, output FROM invocation_logs ORDER BY id").fetchall()
    assert rows == [("same", "printed by 1"), ("other", "printed by 3")]
    assert verify_log(engine, KEY).ok


@pytest.mark.slow
def test_records_sent_in_more_than_one_read_are_all_stored_in_order(engine: Engine) -> None:
    """Records sent faster than the writer reads, over 2 MiB in all (the writer reads at
    most 1 MiB at a time, and stops reading at a read that finds the socket emptied),
    are each stored once, in the order they were sent, and the log verifies."""
    log = AuditLog(engine, KEY)
    pad = "x" * 4096

    def big(i: int) -> AuditEvent:
        return AuditEvent("key:a", "function.invoke", "f@1", "ok", {"i": i, "pad": pad})

    async def go() -> None:
        log.start(process=True)
        try:
            await asyncio.gather(*(log.record(big(i)) for i in range(600)))
        finally:
            log.stop()

    asyncio.run(go())
    with _db(engine) as conn:
        records = [r for (r,) in conn.execute("SELECT record FROM audit_log ORDER BY seq")]
    assert [json.loads(r)["detail"]["i"] for r in records] == list(range(600))
    assert verify_log(engine, KEY).ok


@pytest.mark.slow
def test_synchronous_writes_wait_for_the_process_to_stop(engine: Engine) -> None:
    """record_now() is refused while the writer process runs, and after it stopped
    continues the tree it left."""
    log = AuditLog(engine, KEY)

    async def go() -> None:
        log.start(process=True)
        try:
            await log.record(_event(1))
            with pytest.raises(AuditError, match="its own process"):
                log.record_now(_event(2))
        finally:
            log.stop()

    asyncio.run(go())
    log.record_now(_event(3))
    assert log.size == 2
    assert verify_log(engine, KEY).ok


@pytest.mark.slow
def test_a_writer_begun_early_is_the_one_start_takes_or_is_ended(engine: Engine) -> None:
    """prestart() begins the writer (as the node does first thing); start(process=True)
    takes that process; a log stopped without starting ends it."""
    log = AuditLog(engine, KEY)
    log.prestart()
    early = log._early
    assert early is not None

    async def go() -> None:
        log.start(process=True)
        try:
            assert log._remote is early
            await log.record(_event(1))
        finally:
            log.stop()

    asyncio.run(go())
    assert log.size == 1

    unused = AuditLog(engine, KEY)
    unused.prestart()
    assert unused._early is not None
    spawned = unused._early._early
    assert spawned is not None
    proc, _, _ = spawned.result(timeout=120)
    unused.stop()
    assert proc.poll() is not None
    assert verify_log(engine, KEY).ok
