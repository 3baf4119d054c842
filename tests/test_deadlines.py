"""Timeouts on one timer a loop (deadlines.py): asyncio.timeout's behaviour."""

from __future__ import annotations

import asyncio

import pytest

from donjon.deadlines import TICK_S, Deadlines, deadlines


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


def test_an_alarm_calls_back_once_unless_cancelled() -> None:
    """`call_later` calls its callback once its delay has passed; a cancelled one never."""

    async def main() -> list[str]:
        timeouts = deadlines()
        called: list[str] = []
        first = timeouts.call_later(0.02, lambda: called.append("fired"))
        second = timeouts.call_later(0.02, lambda: called.append("cancelled"))
        second.cancel()
        await asyncio.sleep(0.1)
        assert first.cancelled() and second.cancelled()  # nothing more will be called
        first.cancel()  # (harmless once fired)
        return called

    assert asyncio.run(main()) == ["fired"]


def test_an_alarm_that_raises_is_reported_and_the_others_still_fire() -> None:
    """A callback's exception goes to the loop's exception handler; the alarms due with
    it are still called."""

    async def main() -> tuple[list[str], list[str]]:
        loop = asyncio.get_running_loop()
        reported: list[str] = []
        loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
        timeouts = deadlines()
        called: list[str] = []

        def broken() -> None:
            raise ValueError("a bug")

        timeouts.call_later(0.02, broken)
        timeouts.call_later(0.02, lambda: called.append("after"))
        await asyncio.sleep(0.1)
        return reported, called

    reported, called = asyncio.run(main())
    assert reported == ["Exception in a Deadlines callback"] and called == ["after"]


def test_under_uvloop_a_due_timeout_fires_once_not_in_a_spin() -> None:
    """uvloop's clock counts milliseconds: a bucket's end a hair past its reading must not
    make the timer re-arm itself at once until the clock moves (found in review: 11,185
    runs of the timer for 300 timeouts)."""
    import uvloop

    async def main() -> tuple[int, int]:
        timeouts = deadlines()
        runs = [0]
        fire = timeouts._fire

        def counted() -> None:
            runs[0] += 1
            fire()

        timeouts._fire = counted  # type: ignore[method-assign]  # counted, not changed
        expired = 0
        for _ in range(30):
            try:
                async with timeouts.timeout(0.001):
                    await asyncio.sleep(1)
            except TimeoutError:
                expired += 1
        return expired, runs[0]

    expired, runs = uvloop.run(main())
    assert expired == 30 and runs <= 2 * expired


def test_long_delays_that_come_and_go_are_compacted() -> None:
    """Ticks of timeouts disarmed long before their time are dropped from the queue once
    they outnumber the armed ones: 900 s delays armed and disarmed over a simulated
    minute queue about a thousand ticks, not one per tick of the minute (6,000)."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        timeouts = deadlines()
        clock = [loop.time()]
        loop.time = lambda: clock[0]  # type: ignore[method-assign]  # the test moves it
        for _ in range(6_000):
            clock[0] += TICK_S
            async with timeouts.timeout(900):
                pass
        return len(timeouts._due)

    assert asyncio.run(main()) <= 2 * 1024 + 2


def test_a_closed_loop_is_not_kept_by_its_timeouts() -> None:
    """The registry of loops' timeouts holds each loop weakly: a closed loop is freed."""
    import gc
    import weakref

    async def main() -> None:
        deadlines()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None
