"""The node's in-flight limit (gateway/capacity.py): shed at once past its bounds, audited."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from donjon.gateway.capacity import MIN_IN_FLIGHT, InFlightLimit


def _scope() -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/functions/f/invoke",
        "headers": [],
        "client": ("127.0.0.9", 5000),
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _call(app: InFlightLimit) -> tuple[int, dict[bytes, bytes]]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(_scope(), _receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], dict(start["headers"])


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_a_lagging_loop_with_requests_in_flight_sheds_with_503() -> None:
    """While the loop lags past the bound with MIN_IN_FLIGHT requests in flight, a new
    request gets 503 and Retry-After at once, is counted and told to `on_shed`."""
    told: list[tuple[str, str]] = []

    async def on_shed(scope: Scope, why: str) -> None:
        told.append((str(scope["path"]), why))

    async def go() -> tuple[int, dict[bytes, bytes]]:
        app = InFlightLimit(_ok, limit=1000, max_lag_s=0.05, on_shed=on_shed)
        app.lag.seconds = 0.5
        app.in_flight = MIN_IN_FLIGHT
        try:
            return await _call(app)
        finally:
            await app.lag.stop()

    status, headers = asyncio.run(go())
    assert status == 503
    assert int(headers[b"retry-after"]) >= 1
    assert told == [("/v1/functions/f/invoke", "loop-lag")]


def test_a_lagging_loop_with_few_requests_sheds_nothing() -> None:
    """Below MIN_IN_FLIGHT a lag is one slow piece of work: the request is served."""

    async def go() -> int:
        app = InFlightLimit(_ok, limit=1000, max_lag_s=0.05)
        app.lag.seconds = 0.5
        app.in_flight = MIN_IN_FLIGHT - 1
        try:
            return (await _call(app))[0]
        finally:
            await app.lag.stop()

    assert asyncio.run(go()) == 200


def test_lag_shedding_can_be_turned_off() -> None:
    """With max_lag_s 0 only the in-flight count sheds."""

    async def go() -> list[int]:
        app = InFlightLimit(_ok, limit=MIN_IN_FLIGHT + 1, max_lag_s=0.0)
        app.lag.seconds = 5.0
        app.in_flight = MIN_IN_FLIGHT
        served = (await _call(app))[0]
        app.in_flight = MIN_IN_FLIGHT + 1
        return [served, (await _call(app))[0]]

    assert asyncio.run(go()) == [200, 503]


def test_an_idle_node_stops_sampling() -> None:
    """With nothing in flight the sampler ends (and reads no lag) until the next request."""

    async def go() -> tuple[bool, float]:
        app = InFlightLimit(_ok, limit=10, max_lag_s=0.05)
        app.lag.ensure_started()
        deadline = asyncio.get_running_loop().time() + 30
        while app.lag._task is not None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        return app.lag._task is None, app.lag.seconds

    assert asyncio.run(go()) == (True, 0.0)


def test_the_loop_lag_is_measured() -> None:
    """A loop blocked for 0.2 s reads a lag of over a quarter of that just after."""

    async def go() -> float:
        app: Any = InFlightLimit(_ok, limit=10, max_lag_s=0.05)
        app.in_flight = 1  # it samples only while requests are in flight
        app.lag.ensure_started()
        await asyncio.sleep(0.05)
        import time

        time.sleep(0.2)  # blocks the loop: the lag sampler wakes late
        await asyncio.sleep(0.02)  # a sample or two (each keeps 90 % of the lag seen)
        seen = float(app.lag.seconds)
        await app.lag.stop()
        return seen

    assert asyncio.run(go()) > 0.05


def test_a_request_is_shed_exactly_when_overloaded_says_so() -> None:
    """Over random in-flight counts, limits, lag bounds (0: off) and measured lags, a
    request is shed, with `_overloaded`'s reason, exactly when `_overloaded` answers one:
    the middleware's guard before asking it leaves no shed out and adds none."""
    import random

    draws = random.Random(214)  # noqa: S311 - a repeatable run of states, not a secret

    async def go() -> int:
        sheds = 0
        for _ in range(3000):
            told: list[str] = []

            async def on_shed(scope: Scope, why: str, told: list[str] = told) -> None:
                told.append(why)

            limit = draws.randint(1, 2 * MIN_IN_FLIGHT)
            app = InFlightLimit(
                _ok, limit=limit, max_lag_s=draws.choice((0.0, 0.05, 0.2)), on_shed=on_shed
            )
            app.lag.seconds = draws.choice((0.0, 0.01, 0.05, 0.1, 0.5))
            app.in_flight = draws.randint(0, 2 * MIN_IN_FLIGHT)
            expected = app._overloaded()
            try:
                status, _ = await _call(app)
            finally:
                await app.lag.stop()
            assert (status == 503) is bool(expected)
            assert told == ([expected] if expected else [])
            sheds += bool(expected)
        return sheds

    sheds = asyncio.run(go())
    assert 300 < sheds < 2700  # both answers were asked about often
