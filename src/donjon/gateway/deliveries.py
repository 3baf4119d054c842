"""Events from triggers, run now in the background: the node's `Submit` until the
durable async queue takes their place (issue 16). Each event is a call like any
other (admission, slots, sandbox, audit), as schedules are; its outcome is in the
audit log and `donjon logs` under the returned request id."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from donjon.gateway.access import new_request_id
from donjon.triggers.envelope import Envelope

__all__ = ["BackgroundDeliveries"]

log = logging.getLogger("donjon.deliveries")

Run = Callable[[Envelope, str], Awaitable[None]]


class BackgroundDeliveries:
    """Starts each submitted event as a task; `stop` waits for those in flight."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, envelope: Envelope) -> str:
        request_id = new_request_id()
        task = asyncio.get_running_loop().create_task(self._guarded(envelope, request_id))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return request_id

    async def stop(self) -> None:
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _guarded(self, envelope: Envelope, request_id: str) -> None:
        try:
            await self._run(envelope, request_id)
        except Exception as e:  # one failed event must not stop the others
            log.warning("%s event for %s failed: %s", envelope.trigger, envelope.function, e)
