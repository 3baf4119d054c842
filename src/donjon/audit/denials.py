"""Refused requests, audited per source and window instead of one record each.

A flood of bad credentials must not grow the log by a record per request. For
each (client, actor, action, scope) the first denial of a window is appended at once
(a client is its address; an IPv6 one counts in its /64, whose aggregate names it),
as before, with its request id and `count: 1`. Later denials in that window
are only counted in memory, and written as one record (`aggregated: true`,
`count: n`, the reasons and paths seen, bounded) when the window closes or the
node stops. The sum of `count` over a source's records is exactly the number
of its denials.

Memory is bounded: at most `max_sources` keys are tracked; denials of further
sources are counted under one overflow key per action (client `*`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from donjon.audit.log import AuditEvent, AuditLog
from donjon.client_network import client_network

__all__ = ["OVERFLOW", "DenialListener", "DenialLog"]

#: The client of the record that aggregates sources past `max_sources`.
OVERFLOW = "*"
#: Distinct reasons and paths kept per aggregate; the rest count under "(other)".
_MAX_KINDS = 8

log = logging.getLogger("donjon.audit")

_Key = tuple[str, str, str, str]  # client, actor, action, scope (e.g. the function)
#: Told of each denial as it happens, on the loop: (the event, the client's address,
#: what the refused credential named, e.g. a key id: never written to the log).
DenialListener = Callable[[AuditEvent, str, str], None]


@dataclass(slots=True)
class _Window:
    opened: float  # monotonic
    target: str
    counted: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0
    last_request_id: str = ""
    reasons: dict[str, int] = field(default_factory=dict)
    paths: dict[str, int] = field(default_factory=dict)
    methods: dict[str, int] = field(default_factory=dict)


def _tally(counts: dict[str, int], value: str) -> None:
    if value in counts or len(counts) < _MAX_KINDS:
        counts[value] = counts.get(value, 0) + 1
    else:
        counts["(other)"] = counts.get("(other)", 0) + 1


class DenialLog:
    """Aggregates denials on their way to the audit log. Runs on the event loop only."""

    def __init__(
        self,
        audit: AuditLog,
        window_s: float,
        max_sources: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._audit = audit
        self._window_s = window_s
        self._max_sources = max(1, max_sources)
        self._clock = clock
        self._windows: dict[_Key, _Window] = {}
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[DenialListener] = []

    def add_listener(self, listener: DenialListener) -> None:
        """Call `listener(event, client, named)` for every denial, written yet or not
        (the monitor counts a burst live instead of when its aggregate is written)."""
        self._listeners.append(listener)

    @property
    def tracked(self) -> int:
        """Keys with an open window (bounded by `max_sources` plus the overflow keys)."""
        return len(self._windows)

    async def deny(
        self, event: AuditEvent, client: str, named: str = "", *, scope: str = ""
    ) -> None:
        """Audit `event` (a denial from `client`): durable now if first in its window.

        `named` (the key id a refused credential carried) goes to the listeners only:
        audit lines never tell a live key id from an unknown one. `scope` splits the
        aggregates further (a rate refusal's function: one record per principal,
        function and window).
        """
        for listener in self._listeners:
            try:
                listener(event, client, named)
            except Exception:  # a listener's bug must not lose the denial
                log.exception("denial listener %r failed", listener)
        if self._window_s <= 0:  # aggregation off: every denial is a record of its own
            await self._audit.record(_single(event))
            return
        now = self._clock()
        # An IPv6 client counts in its /64 (client_network.py): a new address for each
        # refused request was a new window each, every one written at once (hE-52).
        key: _Key = (client_network(client), event.actor, event.action, scope)
        window = self._windows.get(key)
        if window is not None and now - window.opened >= self._window_s:
            await self._close(key)
            window = self._windows.get(key)  # another denial may have opened one meanwhile
        if window is None and len(self._windows) >= self._max_sources:
            key = (OVERFLOW, OVERFLOW, event.action, "")
            window = self._windows.get(key)
        if window is None:
            self._windows[key] = _Window(opened=now, target=event.target)
            await self._audit.record(_single(event))
            return
        window.counted += 1
        ts = time.time()
        window.first_ts = window.first_ts or ts
        window.last_ts = ts
        window.last_request_id = str(event.detail.get("request_id", ""))
        _tally(window.reasons, str(event.detail.get("reason", "")))
        _tally(window.paths, event.target)
        _tally(window.methods, str(event.detail.get("method", "")))

    async def flush(self, *, everything: bool = False) -> None:
        """Write the aggregates of windows that have closed (all of them with `everything`)."""
        now = self._clock()
        for key in [
            k for k, w in self._windows.items() if everything or now - w.opened >= self._window_s
        ]:
            await self._close(key)

    async def _close(self, key: _Key) -> None:
        window = self._windows.pop(key, None)  # before any await: new denials open a new one
        if window is None or not window.counted:
            return
        try:
            await self._audit.record(self._aggregate(key, window))
        except Exception:
            self._keep(key, window)  # counted, not written: try again at the next flush
            raise

    def _keep(self, key: _Key, window: _Window) -> None:
        current = self._windows.get(key)
        if current is None:
            self._windows[key] = window
            return
        current.counted += window.counted
        current.first_ts = min(
            current.first_ts or window.first_ts, window.first_ts or current.first_ts
        )
        for mine, theirs in (
            (current.reasons, window.reasons),
            (current.paths, window.paths),
            (current.methods, window.methods),
        ):
            for value, n in theirs.items():
                mine[value] = mine.get(value, 0) + n

    def _aggregate(self, key: _Key, window: _Window) -> AuditEvent:
        client, actor, action, _ = key
        return AuditEvent(
            actor if client != OVERFLOW else "*",
            action,
            window.target,
            "denied",
            {
                "client": client,
                "count": window.counted,
                "aggregated": True,
                "window_s": self._window_s,
                "first_ts": round(window.first_ts, 6),
                "last_ts": round(window.last_ts, 6),
                "last_request_id": window.last_request_id,
                "reasons": window.reasons,
                "paths": window.paths,
                "methods": window.methods,
            },
        )

    # -- the flusher -------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and self._window_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="denials")

    async def stop(self) -> None:
        """Stop the flusher and write every open aggregate: nothing counted is lost."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush(everything=True)

    async def _run(self) -> None:
        tick = min(self._window_s / 2, 1.0)
        while True:
            await asyncio.sleep(tick)
            try:
                await self.flush()
            except Exception:  # the audit log failing is logged there; keep counting
                log.exception("flushing denial aggregates failed")


def _single(event: AuditEvent) -> AuditEvent:
    return AuditEvent(
        event.actor, event.action, event.target, event.outcome, {**event.detail, "count": 1}
    )
