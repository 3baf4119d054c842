"""Deploy work is bounded: a few at work on their own threads, a few waiting, the rest 503."""

from __future__ import annotations

import asyncio
import threading

import pytest

from donjon.gateway.problems import status_for
from donjon.lifecycle import DeployBusy, DeployQueue


def test_beyond_slots_and_waiting_a_deploy_is_refused_with_retry_after() -> None:
    """With 1 slot and 1 waiting place, a third deploy at once gets DeployBusy (503)."""
    release = threading.Event()
    started = threading.Event()
    threads: set[str] = set()

    def work() -> int:
        threads.add(threading.current_thread().name)
        started.set()
        release.wait(60)
        return 7

    async def scenario() -> tuple[list[int], DeployBusy]:
        queue = DeployQueue(slots=1, waiting=1, retry_after_s=3)
        first = asyncio.ensure_future(queue.run("a", work))
        second = asyncio.ensure_future(queue.run("b", work))
        await asyncio.to_thread(started.wait, 60)
        with pytest.raises(DeployBusy) as refused:
            await queue.run("c", work)
        release.set()
        done = [await first, await second]
        assert queue.admitted == 0
        queue.close()
        return done, refused.value

    done, busy = asyncio.run(scenario())
    assert done == [7, 7]
    assert status_for(busy) == 503 and busy.retry_after_s == 3
    assert all(name.startswith("deploy") for name in threads)  # never the shared pool


def test_a_caller_that_stops_waiting_keeps_its_place_until_the_work_ends() -> None:
    """Cancelling the wait does not free the slot while the thread still runs."""
    release = threading.Event()
    started = threading.Event()

    def work() -> None:
        started.set()
        release.wait(60)

    async def scenario() -> int:
        queue = DeployQueue(slots=1, waiting=0)
        task = asyncio.ensure_future(queue.run("a", work))
        await asyncio.to_thread(started.wait, 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        held = queue.admitted
        release.set()
        queue.close()
        return held

    assert asyncio.run(scenario()) == 1


def test_one_caller_holds_at_most_the_slots() -> None:
    """With 2 slots and 8 waiting places, a caller's third deploy at once is refused while
    another caller's is taken: one caller's slow scans cannot fill the queue."""
    release = threading.Event()

    def work() -> int:
        release.wait(60)
        return 1

    async def scenario() -> tuple[DeployBusy, int]:
        queue = DeployQueue(slots=2, waiting=8)
        mine = [asyncio.ensure_future(queue.run("dev", work)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(DeployBusy) as refused:
            await queue.run("dev", work)
        theirs = asyncio.ensure_future(queue.run("other", work))
        await asyncio.sleep(0)
        release.set()
        done = sum([await m for m in mine]) + await theirs
        assert queue.admitted == 0
        queue.close()
        return refused.value, done

    busy, done = asyncio.run(scenario())
    assert "2 of your deploys" in busy.message
    assert done == 3


def test_busy_answer_says_when_to_retry() -> None:
    """DeployBusy becomes a 503 problem document with a Retry-After header."""
    from donjon.gateway.problems import problem_from_error

    response = problem_from_error(DeployBusy("10 deploys are in progress", retry_after_s=4.2))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
