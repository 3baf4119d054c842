"""The embedded queue on a real SQLite file: enqueue, leases, expiry and re-claim, outcomes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from donjon.store.tables import invocations
from donjon.triggers.queue import (
    InvocationNotFound,
    RetryPolicy,
    SqlInvocationQueue,
    Status,
)
from donjon.vault import MasterKey
from donjon.vault.queueseal import QueueSealer
from queue_support import envelope, sqlite_queue

POLICY = RetryPolicy(attempts=3, backoff_s=1.0, max_age_s=3600)


class _Clock:
    """The queue module's `time`, moved by the test: a lease expires when the test says,
    not when a loaded machine happens to take longer than the lease between two steps."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr("donjon.triggers.queue.sql.time", fake)
    return fake


def test_enqueued_invocation_is_durable_and_queued(tmp_path: Path) -> None:
    """An enqueued event is read back from the database as queued, its body intact."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        queued = await queue.enqueue(envelope(event=b'{"x": [1, 2]}'), POLICY)
        again = await sqlite_queue(tmp_path).get(queued.id)  # a new engine: from the file
        assert again is not None
        assert again.status is Status.QUEUED
        assert again.event == b'{"x": [1, 2]}'
        assert again.attempts == 0
        assert again.retry == POLICY
        assert again.principal == "key:abc"

    asyncio.run(go())


def test_claim_leases_each_due_row_once(tmp_path: Path) -> None:
    """A claimed row is running with one attempt counted, and no second claim takes it."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        first = await queue.enqueue(envelope(), POLICY)
        second = await queue.enqueue(envelope(), POLICY)
        leases = await queue.claim(1, 60)
        assert [lease.invocation.id for lease in leases] == [first.id]
        assert leases[0].invocation.status is Status.RUNNING
        assert leases[0].invocation.attempts == 1
        rest = await queue.claim(10, 60)
        assert [lease.invocation.id for lease in rest] == [second.id]
        assert await queue.claim(10, 60) == []

    asyncio.run(go())


def test_expired_lease_is_claimed_again_and_the_old_holder_writes_nothing(
    tmp_path: Path, clock: _Clock
) -> None:
    """A lease that expires (its node died) is re-claimed; the lost lease records nothing."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        queued = await queue.enqueue(envelope(), POLICY)
        (lost,) = await queue.claim(1, 0.2)
        clock.now += 0.1
        assert await queue.claim(1, 60) == []  # still held
        clock.now += 0.2
        (taken,) = await queue.claim(1, 60)
        assert taken.invocation.id == queued.id
        assert taken.invocation.attempts == 2
        assert taken.token != lost.token
        assert not await queue.succeed(lost, b'"late"', "r-lost")
        assert not await queue.renew(lost, 60)
        assert await queue.succeed(taken, b'"done"', "r-taken")
        done = await queue.get(queued.id)
        assert done is not None
        assert done.status is Status.SUCCEEDED
        assert done.result == b'"done"'
        assert done.request_id == "r-taken"

    asyncio.run(go())


def test_renewed_lease_is_not_claimed_again(tmp_path: Path, clock: _Clock) -> None:
    """Renewing moves the expiry on: a row whose holder is alive stays its own."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        await queue.enqueue(envelope(), POLICY)
        (lease,) = await queue.claim(1, 0.3)
        clock.now += 0.2
        assert await queue.renew(lease, 60)
        clock.now += 0.2  # past the first lease's end, within the renewed one
        assert await queue.claim(1, 60) == []

    asyncio.run(go())


def test_failed_attempt_waits_for_its_retry_time(tmp_path: Path) -> None:
    """A failed attempt is not claimed before its retry is due, and is claimed once it is."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        queued = await queue.enqueue(envelope(), POLICY)
        (lease,) = await queue.claim(1, 60)
        assert await queue.fail(lease, "Boom", "it broke", "r1", time.time() + 3600)
        failed = await queue.get(queued.id)
        assert failed is not None
        assert failed.status is Status.FAILED
        assert (failed.error_type, failed.error) == ("Boom", "it broke")
        assert await queue.claim(1, 60) == []

    asyncio.run(go())


def test_failure_due_now_is_claimed_with_the_next_attempt(tmp_path: Path) -> None:
    """A failure whose retry is due is claimed again, its attempts counting on."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        await queue.enqueue(envelope(), POLICY)
        (lease,) = await queue.claim(1, 60)
        assert await queue.fail(lease, "Boom", "it broke", "r1", time.time())
        (again,) = await queue.claim(1, 60)
        assert again.invocation.attempts == 2
        assert again.invocation.status is Status.RUNNING

    asyncio.run(go())


def test_uncharged_failure_gives_its_attempt_back(tmp_path: Path) -> None:
    """A throttled attempt (charge=False) is not counted among the attempts."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        queued = await queue.enqueue(envelope(), POLICY)
        (lease,) = await queue.claim(1, 60)
        assert await queue.fail(lease, "RateLimited", "429", None, time.time(), charge=False)
        found = await queue.get(queued.id)
        assert found is not None
        assert found.attempts == 0

    asyncio.run(go())


def test_dead_invocation_is_listed_redriven_and_purged(tmp_path: Path) -> None:
    """Dead rows are the DLQ: listed per function, redriven afresh, purged."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        one = await queue.enqueue(envelope("alpha"), POLICY)
        two = await queue.enqueue(envelope("beta"), POLICY)
        for lease in await queue.claim(2, 60):
            assert await queue.fail(lease, "Boom", "no", "r", None)
        assert [d.id for d in await queue.dead("alpha", 10)] == [one.id]
        assert {d.id for d in await queue.dead(None, 10)} == {one.id, two.id}
        redriven = await queue.redrive(one.id, RetryPolicy(5, 1.0, 60))
        assert redriven.status is Status.QUEUED
        assert redriven.attempts == 0
        assert redriven.retry == RetryPolicy(5, 1.0, 60)
        assert await queue.purge("alpha") == 0  # alpha's is queued now, not dead
        assert await queue.purge(None) == 1
        assert await queue.get(two.id) is None
        assert await queue.get(one.id) is not None

    asyncio.run(go())


def test_redrive_of_a_row_that_is_not_dead_is_refused(tmp_path: Path) -> None:
    """Only dead-lettered invocations are redriven; a queued one is left as it is."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        queued = await queue.enqueue(envelope(), POLICY)
        with pytest.raises(InvocationNotFound):
            await queue.redrive(queued.id, None)
        found = await queue.get(queued.id)
        assert found is not None
        assert found.status is Status.QUEUED

    asyncio.run(go())


def test_prune_forgets_only_old_successes(tmp_path: Path) -> None:
    """Pruning deletes succeeded rows past the cut-off and keeps dead ones."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        ok = await queue.enqueue(envelope(), POLICY)
        bad = await queue.enqueue(envelope(), POLICY)
        leases = {lease.invocation.id: lease for lease in await queue.claim(2, 60)}
        await queue.succeed(leases[ok.id], b"1", "r")
        await queue.fail(leases[bad.id], "Boom", "no", "r", None)
        assert await queue.prune(time.time() + 1) == 1
        assert await queue.get(ok.id) is None
        assert await queue.get(bad.id) is not None

    asyncio.run(go())


def _sealed_queue(tmp_path: Path, key: bytes = b"k" * 32) -> SqlInvocationQueue:
    queue = sqlite_queue(tmp_path)
    return SqlInvocationQueue(queue.engine, QueueSealer(MasterKey(key)))


def test_events_and_results_are_sealed_at_rest(tmp_path: Path) -> None:
    """Neither the event nor the result is in the database file in the clear."""

    async def go() -> None:
        queue = _sealed_queue(tmp_path)
        queued = await queue.enqueue(envelope(event=b'{"card": "4111-PLAINTEXT"}'), POLICY)
        (lease,) = await queue.claim(1, 60)
        assert lease.invocation.event == b'{"card": "4111-PLAINTEXT"}'
        assert await queue.succeed(lease, b'{"receipt": "RESULT-PLAINTEXT"}', "r")
        done = await queue.get(queued.id)
        assert done is not None
        assert done.result == b'{"receipt": "RESULT-PLAINTEXT"}'
        queue.engine.dispose()

    asyncio.run(go())
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("queue.db*"))
    assert b"4111-PLAINTEXT" not in on_disk
    assert b"RESULT-PLAINTEXT" not in on_disk


def test_a_sealed_event_moved_to_another_row_does_not_open(tmp_path: Path) -> None:
    """A ciphertext copied onto another invocation's row is refused, not delivered: the
    claim dead-letters it (and takes the other), reading it shows why, with no event."""

    async def go() -> None:
        queue = _sealed_queue(tmp_path)
        one = await queue.enqueue(envelope(event=b'{"to": "alice"}'), POLICY)
        two = await queue.enqueue(envelope(event=b'{"to": "bob"}'), POLICY)
        with queue.engine.begin() as conn:
            row = conn.execute(
                select(invocations.c.event, invocations.c.event_key).where(
                    invocations.c.id == one.id
                )
            ).one()
            conn.execute(
                update(invocations)
                .where(invocations.c.id == two.id)
                .values(event=row.event, event_key=row.event_key)
            )
        moved = await queue.get(two.id)
        assert moved is not None and moved.event == b"" and moved.error_type == "Unreadable"
        assert moved.error is not None and "does not decrypt" in moved.error
        leases = await queue.claim(5, 30.0)
        assert [lease.invocation.event for lease in leases] == [b'{"to": "alice"}']
        dead = await queue.get(two.id)
        assert dead is not None and dead.status is Status.DEAD, dead
        wrong_key = _sealed_queue(tmp_path, b"x" * 32)
        other = await wrong_key.get(one.id)
        assert other is not None and other.event == b"" and other.error_type == "Unreadable"
        queue.engine.dispose()
        wrong_key.engine.dispose()

    asyncio.run(go())


def test_admitted_request_is_remembered_until_a_redrive(tmp_path: Path) -> None:
    """An admitted enqueue is marked so (its first attempt skips a second charge); a
    redrive, not the caller's request, clears the mark."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        plain = await queue.enqueue(envelope(), POLICY)
        admitted = await queue.enqueue(envelope(), POLICY, admitted=True)
        assert not plain.admitted
        claimed = {lease.invocation.id: lease for lease in await queue.claim(2, 60)}
        assert claimed[admitted.id].invocation.admitted
        assert not claimed[plain.id].invocation.admitted
        assert await queue.fail(claimed[admitted.id], "Boom", "no", "r", None)
        redriven = await queue.redrive(admitted.id, None)
        assert not redriven.admitted

    asyncio.run(go())


def test_the_version_queued_for_is_kept_and_a_redrive_sets_it_anew(tmp_path: Path) -> None:
    """An invocation keeps the function's version it was queued for (one alone, a batch,
    and none given: None); a redrive under a version records that one, without one
    keeps the old."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        one = await queue.enqueue(envelope(), POLICY, version=3)
        batch = await queue.enqueue_all([envelope(), envelope()], POLICY, version=4)
        bare = await queue.enqueue(envelope(), POLICY)
        assert (one.version, [b.version for b in batch], bare.version) == (3, [4, 4], None)
        found = await queue.get(one.id)
        assert found is not None and found.version == 3
        claimed = {lease.invocation.id: lease for lease in await queue.claim(4, 60)}
        assert claimed[batch[0].id].invocation.version == 4
        for lease in claimed.values():
            assert await queue.fail(lease, "Boom", "no", "r", None)
        assert (await queue.redrive(one.id, None, version=7)).version == 7
        assert (await queue.redrive(batch[0].id, None)).version == 4

    asyncio.run(go())


def test_a_tokens_key_is_kept_with_its_call_and_old_rows_read_without_it(
    tmp_path: Path,
) -> None:
    """The kid and the key fingerprint a token call queued with read back (a redrive's
    envelope too); a database made before the fingerprint was kept gets its column at
    start, and the rows queued before it read back with their kid and no fingerprint."""

    async def go() -> None:
        queue = sqlite_queue(tmp_path)
        signed = replace(envelope(), principal="jwt:corp:alice", signed_by="k1")
        old = await queue.enqueue(signed, POLICY)
        with queue.engine.begin() as conn:
            conn.execute(text("ALTER TABLE invocations DROP COLUMN signed_key"))
        again = sqlite_queue(tmp_path)  # a start: the column is added, NULL in old rows
        before = await again.get(old.id)
        assert before is not None and (before.signed_by, before.signed_key) == ("k1", None)
        new = await again.enqueue(replace(signed, signed_key="ab" * 32), POLICY)
        after = await sqlite_queue(tmp_path).get(new.id)
        assert after is not None and (after.signed_by, after.signed_key) == ("k1", "ab" * 32)
        assert after.envelope().signed_key == "ab" * 32

    asyncio.run(go())
