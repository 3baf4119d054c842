"""Serving capacity: requests in flight, counted from a complete head to the response's end.

uvicorn's `limit_concurrency` counts open connections, so idle and half-sent
ones could take the node's whole capacity; here only requests the app is
actually serving count. Connections are bounded separately (connections.py).
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from donjon.gateway.problems import problem

__all__ = ["InFlightLimit"]

log = logging.getLogger("donjon")


class InFlightLimit:
    """ASGI middleware: past `limit` requests being served, answer 503 at once."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            log.warning("shed a request: %d requests in flight", self.in_flight)
            response = problem(503, "the node is at capacity; retry shortly")
            response.headers["retry-after"] = "1"
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
