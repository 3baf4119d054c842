"""The pool's `_locked` (sandbox/pool.py) against `asyncio.Semaphore.locked`, which it
stands for on every call: the same answer in every state a gate can be in."""

from __future__ import annotations

import asyncio
import collections
import random

from donjon.sandbox.pool import _locked


def test_locked_answers_as_the_semaphore_in_random_states() -> None:
    """Calls take, wait for, give back and give up slots of gates of 1-3 in random order;
    after every step, and between the loop's steps, both answers are the same."""

    async def main() -> int:
        draws = random.Random(1414)  # noqa: S311 - a repeatable run of steps, not a secret
        compared = 0
        for _ in range(60):
            gate = asyncio.Semaphore(draws.randint(1, 3))
            held: list[asyncio.Task[bool]] = []
            for _ in range(40):
                step = draws.random()
                if step < 0.45:
                    held.append(asyncio.ensure_future(gate.acquire()))
                elif step < 0.7 and held:
                    task = held.pop(draws.randrange(len(held)))
                    if task.done() and not task.cancelled():
                        gate.release()
                    else:
                        task.cancel()
                elif step < 0.85:
                    await asyncio.sleep(0)
                assert _locked(gate) == gate.locked()
                compared += 1
            for task in held:
                task.cancel()
            await asyncio.sleep(0)
        return compared

    assert asyncio.run(main()) == 60 * 40


def test_locked_asks_the_waiters_when_a_slot_is_free() -> None:
    """A free slot with a waiter not cancelled is locked (the waiter takes it); with only
    cancelled waiters it is not; a gate at 0 is locked whatever waits."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiting, given_up = loop.create_future(), loop.create_future()
        given_up.cancel()
        for value, waiters, locked in (
            (1, [waiting], True),
            (1, [given_up], False),
            (2, [given_up, waiting], True),
            (1, [], False),
            (0, [], True),
            (0, [given_up], True),
        ):
            gate = asyncio.Semaphore(value)
            gate._waiters = collections.deque(waiters) if waiters else None
            assert gate.locked() is locked
            assert _locked(gate) is locked

    asyncio.run(main())
