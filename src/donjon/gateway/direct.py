"""The invoke route served below uvicorn's ASGI cycle (issue 14, target 1).

Every warm call is a `POST /v1/functions/{name}/invoke`. Through ASGI it costs
the gateway's loop a `run_asgi` task driving three coroutine layers (the
in-flight limit, the app, the hot route), a receive message per body read, two
send messages whose headers uvicorn checks and joins, and a writer holding the
head for the body. None of that is a control: the controls all live in the
handler (`gateway/invoke.py`), and the in-flight limit (capacity.py) runs here too.

`DirectRoute.take` is asked by the connection's protocol (connections.py) for
each request whose head has just completed, when no other request of the
connection is being served. It takes only the plain case: HTTP/1.1 or 1.0, at
most one Content-Length and no Transfer-Encoding, no `Expect`, no upgrade, no
`root_path`, the app exactly the node's in-flight limit (no proxy-headers
wrapper), no access log, no uvicorn concurrency limit, and a request the hot
route matches (hot_route.py: its pattern, convertors and methods). Anything
else goes through uvicorn and Starlette as before.

What it takes runs in a task of its own (as uvicorn's cycle does, counted in
the server's tasks for shutdown) on uvicorn's own `RequestResponseCycle`, so
the protocol's body callbacks, flow control, deadlines, disconnects and
refusal rests see the state they always did. The handler gets a `Request`
whose body is read from the cycle directly (no receive messages), and its
response, head and body, is written as one buffer with the bytes uvicorn's
`send` would have written. Whatever is not that plain response (a response
class that sends itself, a missing or wrong Content-Length), a shed, the 500
problem after an exception and uvicorn's own 500 go through the cycle's
ASGI `send` as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

from donjon.gateway.capacity import InFlightLimit
from donjon.gateway.hot_route import GatewayApp, HotRoute

__all__ = ["DirectRequest", "DirectRoute"]

#: Told of a 429's head before it is written (connections.py: the refusal rest).
OnRefusal = Callable[[bytes], None]

_REFUSAL = 429


class DirectRequest(Request):
    """Starlette's `Request` for a cycle served directly: headers, client, url and
    path parameters as Starlette reads them from the scope, the body straight from
    the cycle as uvicorn's `receive` would hand it over, without its messages."""

    def __init__(self, scope: Any, cycle: RequestResponseCycle) -> None:
        self.scope = scope
        self._cycle = cycle
        # Anything else reading them (`is_disconnected`) reads them as under ASGI; uvicorn
        # types its messages, Starlette does not.
        self._receive = cycle.receive  # type: ignore[assignment]
        self._send = cycle.send  # type: ignore[assignment]
        self._stream_consumed = False
        self._is_disconnected = False
        self._form = None

    async def stream(self) -> AsyncGenerator[bytes, None]:
        # Starlette's `stream` over uvicorn's `receive`, without the messages in between.
        if hasattr(self, "_body"):
            yield self._body
            yield b""
            return
        if self._stream_consumed:
            raise RuntimeError("Stream consumed")
        cycle = self._cycle
        while not self._stream_consumed:
            if not cycle.disconnected and not cycle.response_complete:
                cycle.flow.resume_reading()
                await cycle.message_event.wait()
                cycle.message_event.clear()
            if cycle.disconnected or cycle.response_complete:
                self._is_disconnected = True
                raise ClientDisconnect()
            body = bytes(cycle.body)
            cycle.body = bytearray()
            if not cycle.more_body:
                self._stream_consumed = True
            if body:
                yield body
        yield b""


class DirectRoute:
    """The node's invoke route as the gateway's protocol serves it directly."""

    __slots__ = ("_app", "_hot", "_outer", "served")

    def __init__(self, outer: InFlightLimit, app: GatewayApp) -> None:
        if app.hot is None:
            raise ValueError("the app has no hot route to serve directly")
        self._outer = outer
        self._app = app
        self._hot: HotRoute = app.hot
        #: Requests taken since start (tests and benches read it).
        self.served = 0

    def take(
        self,
        app: Any,
        scope: Any,  # uvicorn's HTTPScope, Starlette's Scope: the same dict
        headers: list[tuple[bytes, bytes]],
        plain: bool,
    ) -> dict[str, Any] | None:
        """The path parameters if this request is served directly, else None.

        `app`: what uvicorn would run (the node's app, or a wrapper, or its 503);
        `plain`: the protocol's own conditions hold (version, Expect, upgrade, logs)."""
        if not plain or app is not self._outer:
            return None
        lengths = 0
        for name, _ in headers:
            if name == b"content-length":
                lengths += 1
            elif name in (b"transfer-encoding", b"upgrade", b"expect"):
                return None
        if lengths > 1:
            return None
        params = self._hot.match(scope)
        if params is None:
            return None
        scope["app"] = self._app
        scope["path_params"] = params
        self.served += 1
        return params

    async def run(
        self,
        cycle: RequestResponseCycle,
        transport: asyncio.Transport,
        on_refusal: OnRefusal | None,
    ) -> None:
        """`cycle.run_asgi(app)` for the invoke route: the same outcomes, logged the same."""
        try:
            await self._admitted(cycle, transport, on_refusal)
        except BaseException as exc:
            cycle.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not cycle.response_started:
                await cycle.send_500_response()
            else:
                cycle.transport.close()
        else:
            if not cycle.response_started and not cycle.disconnected:
                cycle.logger.error("ASGI callable returned without starting response.")
                await cycle.send_500_response()
            elif not cycle.response_complete and not cycle.disconnected:
                cycle.logger.error("ASGI callable returned without completing response.")
                cycle.transport.close()
        finally:
            cycle.on_response = lambda: None

    async def _admitted(
        self,
        cycle: RequestResponseCycle,
        transport: asyncio.Transport,
        on_refusal: OnRefusal | None,
    ) -> None:
        """The in-flight limit's admission (capacity.py), as its `__call__` does it."""
        limit = self._outer
        if limit.max_lag_s > 0:
            limit.lag.ensure_started()
        why = limit._overloaded()
        if why:
            await limit._shed(*_asgi(cycle), why)
            return
        limit.in_flight += 1
        try:
            await self._serve(cycle, transport, on_refusal)
        finally:
            limit.in_flight -= 1

    async def _serve(
        self,
        cycle: RequestResponseCycle,
        transport: asyncio.Transport,
        on_refusal: OnRefusal | None,
    ) -> None:
        """The hot route's `__call__` (hot_route.py), its plain response written at once."""
        request = DirectRequest(cycle.scope, cycle)
        started = False
        try:
            response = await self._hot.endpoint(request)
            started = True
            if type(response).__call__ is not Response.__call__:
                await _send(response, *_asgi(cycle))
                return
            if cycle.flow.write_paused and not cycle.disconnected:
                await cycle.flow.drain()
            if not cycle.disconnected:  # as `send`: nothing is written to a client that left
                head = _head(cycle, response)
                if head is None:  # not one buffer's worth: as the hot route sends it
                    await _send(response, *_asgi(cycle))
                    return
                if on_refusal is not None and response.status_code == _REFUSAL:
                    on_refusal(head)
                _complete(cycle, transport, head, response.body)
            if response.background is not None:
                await response.background()
        except Exception as exc:
            if not started:  # as ServerErrorMiddleware: the 500 problem, unless too late
                answer = await self._hot.on_error(request, exc)
                await answer(*_asgi(cycle))
            raise


def _asgi(cycle: RequestResponseCycle) -> tuple[Scope, Receive, Send]:
    """The cycle's scope, `receive` and `send`, as Starlette types them."""
    return cast(Scope, cycle.scope), cast(Receive, cycle.receive), cast(Send, cycle.send)


async def _send(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    """The response through the cycle's ASGI `send`, as the hot route sends it."""
    if type(response).__call__ is Response.__call__:
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})
        if response.background is not None:
            await response.background()
    else:  # a response of its own making (streamed, a file...): as it sends itself
        await response(scope, receive, send)


def _head(cycle: RequestResponseCycle, response: Response) -> bytes | None:
    """The head uvicorn's `send` would write for `response`, checked as it checks it,
    the cycle marked as started as it marks it; None (the cycle left as it was) unless
    the response has exactly one Content-Length, equal to its body's, and no
    Transfer-Encoding: only then is one buffer what uvicorn's two writes would be."""
    cycle.response_started = True  # before the checks: an invalid header closes, as there
    content = [STATUS_LINE[response.status_code]]
    close = False
    length = None
    for raw_name, value in (*cycle.default_headers, *response.raw_headers):
        if HEADER_RE.search(raw_name):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(value):
            raise RuntimeError("Invalid HTTP header value.")
        name = raw_name.lower()
        if name == b"content-length":
            length = value if length is None else b""  # two: never a body's length
        elif name == b"transfer-encoding":
            length = b""
        elif name == b"connection" and b"close" in [t.lower().strip() for t in value.split(b",")]:
            close = True
        content += (name, b": ", value, b"\r\n")
    if length != str(len(response.body)).encode():
        cycle.response_started = False
        return None
    cycle.waiting_for_100_continue = False
    if close:
        cycle.keep_alive = False
    elif not cycle.keep_alive:
        content.append(b"connection: close\r\n")
    content.append(b"\r\n")
    return b"".join(content)


def _complete(
    cycle: RequestResponseCycle,
    transport: asyncio.Transport,
    head: bytes,
    body: bytes | memoryview,
) -> None:
    """Write head and body in one buffer and end the cycle as uvicorn's last `send`
    ends it."""
    transport.write(head + body)
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        transport.close()
    cycle.on_response()
