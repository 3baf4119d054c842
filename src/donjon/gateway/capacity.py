"""Serving capacity: requests in flight, counted from a complete head to the response's end,
and the event loop's own backlog.

uvicorn's `limit_concurrency` counts open connections, so idle and half-sent
ones could take the node's whole capacity; here only requests the app is
actually serving count. Connections are bounded separately (connections.py).

Past `limit` requests in flight, or while the loop runs what is due later than
`max_lag_s` (`LoopLag`: the gateway's CPU is the bottleneck, so every request
admitted now answers later and makes the others later), a new request is
answered 503 with Retry-After at once, before anything is read or checked: the
cheapest answer the node has, so an overload is shed instead of queued. The
sheds are counted, logged once a second and audited per client and window
(`on_shed`: audit/denials.py), never a line or a record per request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from donjon.audit import AuditEvent
from donjon.audit.denials import DenialLog
from donjon.gateway.problems import problem
from donjon.obs.metrics import Metrics

__all__ = ["MIN_IN_FLIGHT", "InFlightLimit", "LoopLag", "audit_connect_refusals", "audit_sheds"]

log = logging.getLogger("donjon")

#: Below this many requests in flight none is shed for the loop's lag: a lag then is
#: one slow piece of work, not an overload.
MIN_IN_FLIGHT = 8
#: The liveness and readiness probes (readiness.py): never shed for capacity.
PROBES = frozenset({"/healthz", "/readyz"})
#: Told of each shed request (the scope, why); audits it (server.py).
OnShed = Callable[[Scope, str], Awaitable[None]]


class LoopLag:
    """How late the event loop runs a timer: sampled every `every_s`, quick to rise and
    slow to fall (a moving average that jumps to any higher sample). It samples only
    while `busy()` (requests in flight): an idle node is not woken 100 times a second."""

    def __init__(self, every_s: float = 0.01, busy: Callable[[], bool] = lambda: True) -> None:
        self.every_s = every_s
        self.seconds = 0.0
        self._busy = busy
        self._task: asyncio.Task[None] | None = None

    def ensure_started(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.every_s
            await asyncio.sleep(self.every_s)
            late = max(0.0, loop.time() - due)
            self.seconds = late if late > self.seconds else 0.9 * self.seconds + 0.1 * late
            if not self._busy():  # nothing in flight: stop until the next request
                self.seconds = 0.0
                self._task = None
                return


class InFlightLimit:
    """ASGI middleware: past `limit` requests being served, or while the loop lags past
    `max_lag_s` with at least `MIN_IN_FLIGHT` in flight, answer 503 at once."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        max_lag_s: float = 0.0,
        on_shed: OnShed | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0
        #: 0: the loop's lag sheds nothing (only `limit` does).
        self.max_lag_s = max_lag_s
        self.lag = LoopLag(busy=lambda: self.in_flight > 0)
        self.on_shed = on_shed
        #: Requests shed since start, and since the last log line.
        self.shed = 0
        self._unlogged = 0
        self._logged_at = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lag = self.lag
        if self.max_lag_s > 0 and lag._task is None:  # (`ensure_started`'s test, inline)
            lag.ensure_started()
        if scope["path"] in PROBES:  # a balancer's question, not load: an overloaded node
            await self.app(scope, receive, send)  # is alive and ready, and says so
            return
        # (`_overloaded` asked only when one of its two limits may be passed: its answer
        # is "" otherwise, and most requests pass neither; tests/gateway/test_capacity.py)
        why = (
            self._overloaded()
            if self.in_flight >= self.limit or lag.seconds > self.max_lag_s
            else ""
        )
        if why:
            await self._shed(scope, receive, send, why)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _overloaded(self) -> str:
        if self.in_flight >= self.limit:
            return "in-flight"
        if (
            self.max_lag_s > 0
            and self.lag.seconds > self.max_lag_s
            and self.in_flight >= MIN_IN_FLIGHT
        ):
            return "loop-lag"
        return ""

    async def _shed(self, scope: Scope, receive: Receive, send: Send, why: str) -> None:
        self.shed += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= 1.0:
            log.warning(
                "shed %d request(s) (%s): %d in flight, loop lag %.0f ms",
                self._unlogged,
                why,
                self.in_flight,
                self.lag.seconds * 1000,
            )
            self._unlogged, self._logged_at = 0, now
        if self.on_shed is not None:
            await self.on_shed(scope, why)
        response = problem(503, "the node is at capacity; retry shortly")
        response.headers["retry-after"] = "1"
        await response(scope, receive, send)


def audit_sheds(denials: DenialLog) -> OnShed:
    """`on_shed` for the node: each shed request is a denial (`node.shed`), one record
    per client and window (the first at once, the rest as one aggregate)."""

    async def on_shed(scope: Scope, why: str) -> None:
        peer = scope.get("client")
        try:  # uvicorn has put a trusted proxy's forwarded address here already
            client = str(ipaddress.ip_address(peer[0])) if peer else "-"
        except ValueError:
            client = "-"
        event = AuditEvent(
            "anonymous",
            "node.shed",
            str(scope.get("path", "")),
            "denied",
            {"reason": why, "method": str(scope.get("method", ""))},
        )
        await denials.deny(event, client)

    return on_shed


def audit_connect_refusals(denials: DenialLog, metrics: Metrics) -> Callable[[str], None]:
    """The accept gate's `on_refused` (accept_gate.py): each connection refused over the
    connect rate is counted and is a denial (`node.shed`, reason `connect-rate`), one
    record per address and window; written after the close, which waits for nothing.
    Refusals queue for one writer task (not a task each: a flood makes thousands)."""
    refusals = metrics.rate_limited.labels("-", "connect")
    queued: collections.deque[str] = collections.deque()
    writer: list[asyncio.Task[None]] = []  # the one running, if any

    async def write() -> None:
        try:
            while queued:
                address = queued.popleft()
                event = AuditEvent(
                    "anonymous",
                    "node.shed",
                    "(connection)",
                    "denied",
                    {"reason": "connect-rate", "client": address},
                )
                try:
                    await denials.deny(event, address)
                except Exception:  # the audit log failing is logged there; keep counting
                    log.exception("auditing a refused connection failed")
        finally:
            writer.clear()

    def on_refused(address: str) -> None:
        refusals.inc()
        queued.append(address)
        if not writer:
            writer.append(asyncio.get_running_loop().create_task(write()))

    return on_refused
