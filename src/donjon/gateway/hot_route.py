"""The invoke route served as plain ASGI, below Starlette's middleware and router (issue 14).

Every warm call is a `POST /v1/functions/{name}/invoke`. Through Starlette it
passes the server-error middleware, the exception middleware, the router (which
tries the routes before it in turn) and the route's own request wrapper: five
layers of coroutines, two wrappers around every `send`, a `Request` made twice.
None of them is a control: the controls (key check, policy, limits, schema,
audit) all live in the handler (`gateway/invoke.py`), and they run here the same,
in the same order.

`GatewayApp` takes a request for that route, as the route itself matches it
(its own compiled pattern, parameter convertors and methods), and calls its
handler with a `Request` carrying the same scope keys the handler reads (`app`,
`path_params`). What Starlette's middleware would do on the way out is done
here too: an exception the handler raises is answered with the app's 500
problem if no response was started, then raised on for the server to log (as
`ServerErrorMiddleware` does). Anything else (another method or path, a
`root_path`, lifespan) goes through Starlette unchanged, so the route's table
entry still answers 405, HEAD and the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.convertors import StringConvertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from donjon.gateway.body_chunks import CHUNK, in_pieces, send_body
from donjon.gateway.checked_head import CHECKED_HEAD

__all__ = ["GatewayApp", "HotRoute"]

#: The app's answer to an exception no handler caught (its 500 problem).
OnError = Callable[[Request, Exception], Awaitable[Response]]


class HotRoute:
    """One route of the app's table, served without the app's middleware and router."""

    __slots__ = ("_as_matched", "_convertors", "_endpoint", "_methods", "_on_error", "_pattern")

    def __init__(self, route: Route, on_error: OnError) -> None:
        if route.methods is None:
            raise ValueError(f"the hot route {route.path} must name its methods")
        self._pattern = route.path_regex
        self._convertors = route.param_convertors
        #: Every parameter a plain string: its convertor returns what was matched.
        self._as_matched = all(type(c) is StringConvertor for c in self._convertors.values())
        self._methods = frozenset(route.methods)
        self._endpoint: Callable[[Request], Awaitable[Response]] = route.endpoint
        self._on_error = on_error

    def match(self, scope: Scope) -> dict[str, Any] | None:
        """The path parameters if the route takes this request as Starlette's router
        would (same pattern, convertors, methods), else None (Starlette serves it)."""
        if scope["method"] not in self._methods or scope.get("root_path"):
            return None
        found = self._pattern.match(scope["path"])
        if found is None:
            return None
        if self._as_matched:
            return found.groupdict()
        convertors = self._convertors
        return {key: convertors[key].convert(value) for key, value in found.groupdict().items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await pieces(message)

        try:
            response = await self._endpoint(Request(scope, receive, send))
            if type(response).__call__ is Response.__call__:
                # What `Response.__call__` sends for an http scope, sent here: no wrapper.
                started = True
                start = {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": response.raw_headers,
                }
                checked = getattr(response, "checked_head", None)  # (a function's JSON result)
                if checked is not None:  # its head's lines, made checked (checked_head.py)
                    start[CHECKED_HEAD] = checked
                await send(start)
                body = response.body
                if len(body) > CHUNK:  # (body_chunks.py: in pieces, the loop free between)
                    await send_body(send, body)
                else:
                    await send({"type": "http.response.body", "body": body})
                if response.background is not None:
                    await response.background()
            else:  # a response of its own making (streamed, a file...): as it sends itself
                pieces = in_pieces(send)  # a large body in pieces, the loop free between
                await response(scope, receive, sending)
        except Exception as exc:
            if not started:  # as ServerErrorMiddleware: the 500 problem, unless too late
                answer = await self._on_error(Request(scope), exc)
                await answer(scope, receive, send)
            raise


class GatewayApp(Starlette):
    """The gateway's Starlette app, with its hot route (if set) taken before the rest."""

    hot: HotRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hot = self.hot
            params = hot.match(scope) if hot is not None else None
            if params is not None and hot is not None:
                scope["app"] = self
                scope["path_params"] = params
                await hot(scope, receive, send)
                return
            # Its large bodies in pieces, the loop free between them (body_chunks.py).
            send = in_pieces(send)
        await super().__call__(scope, receive, send)
