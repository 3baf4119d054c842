"""Timeouts on one timer a loop (sandbox/deadlines.py): asyncio.timeout's behaviour."""

from __future__ import annotations

import asyncio

import pytest

from donjon.sandbox.deadlines import TICK_S, Deadlines, deadlines


def test_a_block_past_its_delay_raises_timeout_error_never_before() -> None:
    """The block is cancelled once its delay has passed, and TimeoutError comes out."""

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        timeouts = deadlines()
        start = loop.time()
        with pytest.raises(TimeoutError):
            async with timeouts.timeout(0.05):
                await asyncio.sleep(10)
        return start, loop.time()

    start, end = asyncio.run(main())
    assert end - start >= 0.05


def test_a_block_done_in_time_leaves_nothing_armed() -> None:
    """A block that ends before its delay raises nothing and disarms its timeout."""

    async def main() -> int:
        timeouts = deadlines()
        for _ in range(100):
            async with timeouts.timeout(5):
                await asyncio.sleep(0)
        return len(timeouts)

    assert asyncio.run(main()) == 0


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    """A task cancelled by someone else inside the block sees CancelledError, not
    TimeoutError, even when its timeout expired in the same turn of the loop."""

    async def victim(timeouts: Deadlines, held: list[object]) -> None:
        async with timeouts.timeout(10) as timeout:
            held.append(timeout)
            await asyncio.sleep(10)

    async def main() -> None:
        timeouts = deadlines()
        held: list[object] = []
        task = asyncio.ensure_future(victim(timeouts, held))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        held.clear()
        both = asyncio.ensure_future(victim(timeouts, held))
        await asyncio.sleep(0.01)
        timeout = held[0]
        assert isinstance(timeout, type(timeouts.timeout(1)))
        timeout.expire()  # its deadline passes ...
        both.cancel()  # ... and it is cancelled from outside before it runs again
        with pytest.raises(asyncio.CancelledError):
            await both
        assert timeout.expired() and len(timeouts) == 0

    asyncio.run(main())


def test_a_shorter_delay_after_a_longer_one_fires_first() -> None:
    """The loop's one timer is moved earlier for a deadline before the one it waits for."""

    async def main() -> list[str]:
        timeouts = deadlines()
        order: list[str] = []

        async def wait(name: str, delay: float) -> None:
            try:
                async with timeouts.timeout(delay):
                    await asyncio.sleep(10)
            except TimeoutError:
                order.append(name)

        long = asyncio.ensure_future(wait("long", 0.5))
        await asyncio.sleep(0)
        await wait("short", 0.05)
        long.cancel()
        return order

    assert asyncio.run(main()) == ["short"]


def test_nested_timeouts_each_raise_in_their_own_block() -> None:
    """An inner timeout's expiry is the inner block's TimeoutError; the outer runs on."""

    async def main() -> str:
        timeouts = deadlines()
        async with timeouts.timeout(5):
            try:
                async with timeouts.timeout(0.02):
                    await asyncio.sleep(10)
            except TimeoutError:
                pass
            await asyncio.sleep(0)
            return "outer went on"

    assert asyncio.run(main()) == "outer went on"


def test_calls_that_come_and_go_keep_the_queue_of_ticks_bounded() -> None:
    """However many timeouts are armed and disarmed, the ticks queued are at most the
    longest delay's worth, each once."""

    async def main() -> tuple[int, int]:
        timeouts = deadlines()
        for _ in range(20_000):
            async with timeouts.timeout(0.5):
                pass
        return len(timeouts._due), len(timeouts._queued)

    due, queued = asyncio.run(main())
    assert due == queued
    assert due <= 0.5 / TICK_S + 2 + 200  # ticks spanned while the loop ran, plus one delay


def test_one_set_of_timeouts_per_loop() -> None:
    """`deadlines()` gives each loop its own, the same one on every call in that loop."""

    async def main() -> Deadlines:
        first = deadlines()
        assert deadlines() is first
        return first

    assert asyncio.run(main()) is not asyncio.run(main())
