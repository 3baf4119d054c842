"""An enqueue whose COMMIT's answer is lost (triggers/queue/commit.py), on a real
PostgreSQL behind a loopback relay that cuts the connection at the COMMIT: after the
server committed (the row is stored and runs: the enqueue is taken and recorded, as any
other), before it (nothing stored: refused, its note freed), and with the database
unreachable afterwards (refused, its note kept for the next start, which records it).
Before, every such enqueue raised and freed its note: a stored row ran unrecorded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from donjon.audit.inflight import QUEUING, CallsInFlight, read_slots
from donjon.store import Engine, connect
from donjon.triggers.queue import (
    AsyncInvocations,
    FunctionPolicy,
    QueueError,
    RetryPolicy,
    SqlInvocationQueue,
    commit,
)
from donjon.triggers.queue.noted import record_noted
from pg_cut_support import CommitCutter, relayed_postgres
from postgres_support import PostgresServer
from queue_support import KeptRecords, envelope

pytestmark = pytest.mark.slow  # a PostgreSQL server

RETRY = RetryPolicy(attempts=1, backoff_s=1.0, max_age_s=3600)


@pytest.fixture(scope="module")
def relay() -> Iterator[tuple[PostgresServer, CommitCutter]]:
    with relayed_postgres() as relayed:
        yield relayed


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    """The engines a test made, disposed after it."""
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.dispose()


def _service(
    relay: tuple[PostgresServer, CommitCutter],
    tmp_path: Path,
    bound: int | None,
    engines: list[Engine],
) -> tuple[AsyncInvocations, KeptRecords, CallsInFlight]:
    server, cutter = relay
    engine = connect(server.url.replace(f":{server.port}/", f":{cutter.port}/"))
    engines.append(engine)
    audit = KeptRecords()
    policy = FunctionPolicy(RETRY, queued=bound)
    service = AsyncInvocations(SqlInvocationQueue(engine), audit, lambda name: policy)
    service.notes.journal = CallsInFlight(tmp_path / "calls-in-flight")
    return service, audit, service.notes.journal


def _stored(server: PostgresServer, function: str) -> list[str]:
    with server.connect() as conn:
        rows = conn.execute("SELECT id FROM invocations WHERE function = %s", (function,))
        return [str(r[0]) for r in rows.fetchall()]


@pytest.mark.parametrize("bound", [None, 5], ids=["unbounded", "bounded"])
def test_an_enqueue_committed_unanswered_is_taken_and_recorded(
    relay: tuple[PostgresServer, CommitCutter],
    tmp_path: Path,
    bound: int | None,
    engines: list[Engine],
) -> None:
    server, cutter = relay
    service, audit, journal = _service(relay, tmp_path, bound, engines)
    name = f"lost-answer-{bound}"
    cutter.after, cutter.armed, cuts = True, True, cutter.cuts
    queued = asyncio.run(service.enqueue(envelope(name)))
    assert cutter.cuts == cuts + 1  # its COMMIT's answer was cut
    assert _stored(server, name) == [queued.id]
    assert [(e.action, e.detail["invocation_id"]) for e in audit.events] == [
        ("invocation.enqueue", queued.id)
    ]
    assert journal.in_flight() == 0
    cutter.armed, cuts = True, cutter.cuts  # a batch (an S3 push's records): all of it
    ids = asyncio.run(service.submit_all([envelope(name), envelope(name)]))
    assert cutter.cuts == cuts + 1
    assert sorted(_stored(server, name)) == sorted([queued.id, *ids])
    assert [e.detail["invocation_id"] for e in audit.events[1:]] == ids
    assert journal.in_flight() == 0


def test_an_enqueue_cut_before_its_commit_is_refused_and_leaves_no_note(
    relay: tuple[PostgresServer, CommitCutter], tmp_path: Path, engines: list[Engine]
) -> None:
    server, cutter = relay
    service, audit, journal = _service(relay, tmp_path, 5, engines)
    cutter.after, cutter.armed = False, True
    with pytest.raises(QueueError, match="at the commit"):
        asyncio.run(service.enqueue(envelope("cut-before")))
    assert _stored(server, "cut-before") == []
    assert audit.events == []
    assert journal.in_flight() == 0


def test_an_enqueue_whose_database_goes_away_at_its_commit_is_recorded_at_the_next_start(
    relay: tuple[PostgresServer, CommitCutter],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    engines: list[Engine],
) -> None:
    """Committed, its answer cut, and no connection to be had while the enqueue asks
    (LOOK_S, 1 s here): refused, its note kept; the next start finds its row and records
    it (`recovered`)."""
    server, cutter = relay
    monkeypatch.setattr(commit, "LOOK_S", 1.0)
    service, audit, _ = _service(relay, tmp_path, None, engines)
    asyncio.run(service.pending())  # the pool's connection, opened before the relay is down
    cutter.after, cutter.armed = True, True
    cutter.down = True  # (new connections only: the enqueue's own is open)
    try:
        with pytest.raises(QueueError, match="at the commit"):
            asyncio.run(service.enqueue(envelope("gone-away")))
    finally:
        cutter.down = False
    (stored,) = _stored(server, "gone-away")
    (note,) = read_slots(tmp_path / "calls-in-flight")
    assert note.state == QUEUING
    assert audit.events == []
    log = KeptRecords()
    engines.append(connect(server.url))
    asyncio.run(record_noted(engines[-1], log, [note]))
    ((action, invocation, recovered),) = [
        (e.action, e.detail["invocation_id"], e.detail.get("recovered")) for e in log.events
    ]
    assert (action, invocation, recovered) == ("invocation.enqueue", stored, True)


def test_a_batch_whose_first_row_is_gone_when_asked_is_still_recorded(
    relay: tuple[PostgresServer, CommitCutter], tmp_path: Path, engines: list[Engine]
) -> None:
    """A batch's COMMIT is cut after the server committed; its first row is gone by the
    time the enqueue asks (it ran and was pruned: deleted here). The others are stored and
    run: the enqueue is taken and each of the three recorded (the first ran too). Before,
    only the first was looked for: the batch was refused, its notes freed, and the rest
    ran unrecorded."""
    server, cutter = relay
    service, audit, journal = _service(relay, tmp_path, None, engines)
    name = "first-gone"

    def prune_the_first() -> None:
        first = json.loads(read_slots(tmp_path / "calls-in-flight")[0].text)[2]
        with server.connect() as conn:
            conn.execute("DELETE FROM invocations WHERE id = %s", (first["invocation_id"],))

    cutter.after, cutter.armed, cutter.on_cut = True, True, prune_the_first
    try:
        ids = asyncio.run(service.submit_all([envelope(name) for _ in range(3)]))
    finally:
        cutter.on_cut = None
    stored = _stored(server, name)
    assert len(ids) == 3 and len(stored) == 2 and set(stored) < set(ids)  # all accepted
    assert sorted(e.detail["invocation_id"] for e in audit.events) == sorted(ids)
    assert journal.in_flight() == 0
