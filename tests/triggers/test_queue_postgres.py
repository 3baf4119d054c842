"""The same queue on a real PostgreSQL: the multi-node backend is the same schema and
statement, its claim `FOR UPDATE SKIP LOCKED`; two nodes claiming at once never share a row."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from donjon.store import Engine, connect, create_schema
from donjon.triggers.queue import DeadLettersFull, RetryPolicy, SqlInvocationQueue, Status
from donjon.triggers.queue.claim import claim_statement
from postgres_support import PostgresServer
from queue_support import envelope

pytestmark = pytest.mark.slow

POLICY = RetryPolicy(attempts=3, backoff_s=1.0, max_age_s=3600)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    server = PostgresServer()
    server.start()
    try:
        engine = connect(server.url)
        create_schema(engine)
        engine.dispose()
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def queues(pg_url: str) -> Iterator[Callable[[], SqlInvocationQueue]]:
    """Queues on engines of their own (one per node), disposed after the test."""
    engines: list[Engine] = []

    def make() -> SqlInvocationQueue:
        engines.append(connect(pg_url))
        return SqlInvocationQueue(engines[-1])

    yield make
    for engine in engines:
        engine.dispose()


def test_claim_skips_locked_rows_on_postgresql_only() -> None:
    """PostgreSQL gets FOR UPDATE SKIP LOCKED; SQLite, which has no row locks, does not."""
    statement = claim_statement(0.0, 5, "t", 1.0)
    on_pg = str(statement.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]  # untyped dialect
    on_sqlite = str(statement.compile(dialect=sqlite.dialect()))
    assert "FOR UPDATE SKIP LOCKED" in on_pg
    assert "RETURNING" in on_pg
    assert "FOR UPDATE" not in on_sqlite


def test_lease_expiry_and_outcomes_on_postgresql(
    queues: Callable[[], SqlInvocationQueue],
) -> None:
    """Enqueue, lease, expiry, re-claim and a refused late outcome, on PostgreSQL."""

    async def go() -> None:
        queue = queues()
        queued = await queue.enqueue(envelope("pg-one"), POLICY)
        (lost,) = [
            lease for lease in await queue.claim(100, 0.2) if lease.invocation.id == queued.id
        ]
        await asyncio.sleep(0.3)
        (taken,) = [
            lease for lease in await queue.claim(100, 60) if lease.invocation.id == queued.id
        ]
        assert taken.invocation.attempts == 2
        assert not await queue.succeed(lost, b"1", "late")
        assert await queue.succeed(taken, b'"ok"', "r")
        done = await queue.get(queued.id)
        assert done is not None
        assert done.status is Status.SUCCEEDED
        assert done.result == b'"ok"'

    asyncio.run(go())


def test_two_nodes_claiming_at_once_never_share_a_row(
    queues: Callable[[], SqlInvocationQueue],
) -> None:
    """Two engines (two nodes) claim concurrently: every row once, none twice."""

    async def go() -> None:
        one, two = queues(), queues()
        ids = {(await one.enqueue(envelope("pg-many"), POLICY)).id for _ in range(60)}
        claimed: list[str] = []

        async def drain(queue: SqlInvocationQueue) -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                leases = await queue.claim(3, 60)
                mine = [lease.invocation.id for lease in leases]
                claimed.extend(i for i in mine if i in ids)
                if not leases:
                    return

        await asyncio.gather(*(drain(q) for q in (one, two, one, two)))
        assert sorted(claimed) == sorted(ids)  # each once: no row claimed by two nodes

    asyncio.run(go())


def test_nodes_enqueueing_at_once_never_pass_the_bound_on_postgresql(
    queues: Callable[[], SqlInvocationQueue],
) -> None:
    """Two nodes (engines), four threads each, enqueueing one function at once: exactly its
    `limits.queued` are taken (the advisory lock serialises the count and the insert)."""
    import threading

    from donjon.triggers.queue import QueueFull

    nodes = [queues(), queues()]
    taken: list[str] = []
    refused: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(queue: SqlInvocationQueue) -> None:
        start.wait()
        for _ in range(8):
            try:
                queued = asyncio.run(queue.enqueue(envelope("pg-bound"), POLICY, bound=20))
            except QueueFull:
                with lock:
                    refused.append(1)
            else:
                with lock:
                    taken.append(queued.id)

    threads = [threading.Thread(target=worker, args=(nodes[n % 2],)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 20
    assert len(refused) == 44
    assert asyncio.run(nodes[0].pending("pg-bound")) == {"pg-bound": 20}


def test_an_enqueue_waits_for_another_nodes_uncommitted_one_on_postgresql(
    pg_url: str, queues: Callable[[], SqlInvocationQueue]
) -> None:
    """Node A has inserted the last place's row and not yet committed; node B's enqueue of
    the same function waits for A's transaction (the function's advisory lock), then sees
    its row and is refused: without the lock B would count 0 and insert a second row."""
    import threading

    from donjon.triggers.queue import QueueFull
    from donjon.triggers.queue.bound import bounded_insert, lock_function

    a_engine = connect(pg_url)
    b = queues()
    outcome: list[object] = []
    try:
        a = SqlInvocationQueue(a_engine)
        values = a._values(envelope("pg-wait"), POLICY, False, time.time())
        with a_engine.begin() as conn:
            lock_function(conn, "pg-wait")
            assert conn.execute(*bounded_insert(values, 1, 1)).first() is not None

            def other_node() -> None:
                try:
                    outcome.append(asyncio.run(b.enqueue(envelope("pg-wait"), POLICY, bound=1)))
                except QueueFull as e:
                    outcome.append(e)

            thread = threading.Thread(target=other_node)
            thread.start()
            thread.join(0.5)  # B is given time to overshoot, were it not held
        thread.join()
    finally:
        a_engine.dispose()
    assert len(outcome) == 1
    assert isinstance(outcome[0], QueueFull)
    assert asyncio.run(b.pending("pg-wait")) == {"pg-wait": 1}


def test_a_batch_is_whole_or_nothing_on_postgresql(
    queues: Callable[[], SqlInvocationQueue],
) -> None:
    """A batch of events with no principal (NULL columns) is stored whole when it fits, and
    not at all when it does not."""
    import dataclasses

    from donjon.triggers.queue import QueueFull

    async def go() -> None:
        queue = queues()
        sourced = dataclasses.replace(envelope("pg-batch"), principal=None, trigger="s3")
        got = await queue.enqueue_all([sourced, sourced], POLICY, bound=3)
        assert len(got) == 2
        with pytest.raises(QueueFull):
            await queue.enqueue_all([sourced, sourced], POLICY, bound=3)
        assert await queue.pending("pg-batch") == {"pg-batch": 2}
        stored = await queue.get(got[0].id)
        assert stored is not None
        assert stored.principal is None
        assert not stored.admitted

    asyncio.run(go())


def test_a_storage_event_of_a_long_object_key_is_queued_on_postgresql(
    queues: Callable[[], SqlInvocationQueue],
) -> None:
    """An S3 object key may be 1,024 bytes: its record's delivery id (bucket/key/sequencer)
    was stored as it was, past the 256 characters of the column, and PostgreSQL refused the
    enqueue (DataError): from SQS the message came back forever and never ran, pushed the
    store got 503 at each resend. The id is kept within the column (a digest past it), and
    the same record still gets the same id."""
    import json

    from donjon.manifest.event_triggers import S3Spec
    from donjon.triggers.s3_events import envelopes, parse_notification

    key = "photos/" + "a" * 1000 + ".jpg"
    record = {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "b"}, "object": {"key": key, "sequencer": "0055AED6DCD9"}},
    }
    body = json.dumps({"Records": [record]})
    spec = S3Spec.model_validate({"source": "push", "path": "/long", "secret": "t"})
    taken = envelopes("pg-long-key", spec, parse_notification(body))
    again = envelopes("pg-long-key", spec, parse_notification(body))
    assert taken[0].delivery_id == again[0].delivery_id

    async def go() -> None:
        queue = queues()
        (queued,) = await queue.enqueue_all(taken, POLICY)
        stored = await queue.get(queued.id)
        assert stored is not None
        assert stored.subject == key
        assert stored.delivery_id == taken[0].delivery_id

    asyncio.run(go())


@pytest.fixture
def fresh(pg_url: str) -> Iterator[SqlInvocationQueue]:
    """A queue on a database of this test's own: no other test's due rows in it."""
    import secrets

    import psycopg

    database = "fresh_" + secrets.token_hex(4)
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    engine = connect(pg_url.rsplit("/", 1)[0] + "/" + database)
    try:
        create_schema(engine)
        yield SqlInvocationQueue(engine)
    finally:
        engine.dispose()


def test_a_claim_leases_no_more_than_its_limit_on_postgresql(fresh: SqlInvocationQueue) -> None:
    """A claim of 2 with 12 due leases 2. The pick was `id IN (SELECT ... LIMIT n FOR UPDATE
    SKIP LOCKED)`, which PostgreSQL ran as a nested loop, the subquery again for each row:
    each run skipped the row just updated and gave the next, so one claim leased every due
    row (all 12, and a node's workers ran all of them at once: DONJON_QUEUE_WORKERS held
    nothing, and no other node got any). The pick is now a CTE, run once."""

    async def go() -> None:
        for i in range(12):
            await fresh.enqueue(envelope(f"pg-limit-{i % 3}"), POLICY)
        assert len(await fresh.claim(2, 60)) == 2
        assert len(await fresh.claim(3, 60, {"pg-limit-0": 1})) == 3
        assert await fresh.pending() == {"pg-limit-0": 4, "pg-limit-1": 4, "pg-limit-2": 4}

    asyncio.run(go())


def test_a_claim_takes_the_least_busy_functions_event_first_on_postgresql(
    fresh: SqlInvocationQueue,
) -> None:
    """The fairness order (calls running per function, then age) with FOR UPDATE SKIP
    LOCKED: a younger event of an idle function before an older one of a busy function."""

    async def go() -> None:
        for _ in range(3):
            await fresh.enqueue(envelope("pg-busy"), POLICY)
        await fresh.enqueue(envelope("pg-idle"), POLICY)
        (lease,) = await fresh.claim(1, 60, {"pg-busy": 2})
        assert lease.invocation.function == "pg-idle"

    asyncio.run(go())


@pytest.mark.parametrize("level", ["repeatable read", "serializable"])
def test_the_bound_holds_on_a_database_whose_default_isolation_is_stricter(
    pg_url: str, level: str
) -> None:
    """An operator may set `default_transaction_isolation` above READ COMMITTED. Under
    REPEATABLE READ the transaction's snapshot was taken by its first statement, before
    the advisory lock was granted, so the count missed the rows of the enqueue it had
    waited for (24 taken of a bound of 20); under SERIALIZABLE enqueues failed as the
    database's error (503) instead of being taken or refused. The bounded enqueue runs
    at READ COMMITTED whatever the default."""
    import secrets
    import threading

    import psycopg

    from donjon.triggers.queue import QueueError, QueueFull

    database = "iso_" + secrets.token_hex(4)
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
        admin.execute(f"ALTER DATABASE {database} SET default_transaction_isolation TO '{level}'")
    engines = [connect(pg_url.rsplit("/", 1)[0] + "/" + database) for _ in range(2)]
    try:
        create_schema(engines[0])
        nodes = [SqlInvocationQueue(engine) for engine in engines]
        outcomes: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(8)

        def worker(queue: SqlInvocationQueue) -> None:
            start.wait()
            for _ in range(10):
                try:
                    asyncio.run(queue.enqueue(envelope("pg-iso"), POLICY, bound=20))
                    outcome = "taken"
                except QueueFull:
                    outcome = "full"
                except QueueError as e:
                    outcome = e.message
                with lock:
                    outcomes.append(outcome)

        threads = [threading.Thread(target=worker, args=(nodes[n % 2],)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(set(outcomes)) == ["full", "taken"], outcomes
        assert outcomes.count("taken") == 20
        assert asyncio.run(nodes[0].pending("pg-iso")) == {"pg-iso": 20}
    finally:
        for engine in engines:
            engine.dispose()


def test_dead_letter_bound_and_succeeded_trim_on_postgresql(pg_url: str) -> None:
    """The dead-letter bound's count and the trim of succeeded invocations run on
    PostgreSQL (other tests' rows in the module's database are left alone): two dead of a
    bound of two refuse the next enqueue; of four succeeded, trimmed to two, the two
    newest stay."""

    async def go() -> None:
        engine = connect(pg_url)
        try:
            queue = SqlInvocationQueue(engine, max_dead=2)
            once = RetryPolicy(attempts=1, backoff_s=1.0, max_age_s=3600)
            for _ in range(2):
                await queue.enqueue(envelope("pg-dead"), once, bound=10)
            for lease in await queue.claim(100, 60):  # other tests' rows left too: only ours
                if lease.invocation.function == "pg-dead":
                    assert await queue.fail(lease, "E", "no", "r", None)
            with pytest.raises(DeadLettersFull):
                await queue.enqueue(envelope("pg-dead"), once, bound=10)
            for _ in range(4):
                await queue.enqueue(envelope("pg-done"), once, bound=10)
            ended = []
            for lease in await queue.claim(100, 60):
                if lease.invocation.function == "pg-done":
                    assert await queue.succeed(lease, b"1", "r")
                    ended.append(lease.invocation.id)
            assert await queue.trim_succeeded("pg-done", 2, 1000) == 2
            kept = [await queue.get(i) for i in ended]
            assert [i is not None for i in kept] == [False, False, True, True]
        finally:
            engine.dispose()

    asyncio.run(go())
