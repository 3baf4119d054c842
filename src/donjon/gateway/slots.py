"""Concurrency slots held around a call (issue 15): the caller's, the function's, the node's.

A call holds, for as long as it runs in its sandbox:

1. its principal's slot: at most the key's `concurrency`, else its role's, else
   DONJON_CONCURRENCY_PER_PRINCIPAL calls of one caller at once;
2. the function's slot across nodes (`limits.concurrency`), when the node shares
   its limits (Redis): on one node alone the sandbox pool's own per-function
   semaphore is that cap, with its bounded backlog (sandbox/pool.py, backlog.py);
3. the node's slot: at most DONJON_MAX_CONCURRENCY calls on this node, always
   counted in this node's memory (it bounds this node's own work).

A call that finds one full waits for it at most DONJON_MAX_QUEUE_WAIT_S (and at
most DONJON_MAX_QUEUED_PER_FUNCTION calls wait per key, DONJON_MAX_QUEUED in
all), then gets `ConcurrencyFull`: 503 with Retry-After, audited in aggregate.
Slots are given back on every path (`Held.end` runs in the caller's `finally`:
success, error, timeout, disconnect, cancellation; for a call whose processes run on
past an early answer, once they are gone), and are leased past the call's own
deadline in case a holder dies without giving them back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from donjon.audit import AuditEvent
from donjon.errors import Error
from donjon.gateway.actors import actor_of
from donjon.gateway.node import Node
from donjon.gateway.rate_buckets import caller_limits, concurrency_key
from donjon.identity import Principal
from donjon.lifecycle import Deployed
from donjon.ratelimit import BucketKey, ConcurrencyLimiter, MemoryConcurrencyLimiter, Slot

__all__ = ["NODE_KEY", "ConcurrencyFull", "Held", "hold_slots"]

log = logging.getLogger("donjon")

#: The key of the node's own slots (in `node.node_slots`, never shared).
NODE_KEY = BucketKey(principal="*", scope="node")
#: A lease outlives the call's deadline by this much (a holder that died frees it then).
LEASE_MARGIN_S = 60.0
#: Releases under way of calls whose processes ran on past their answer (kept referenced).
_RELEASING: set[asyncio.Task[None]] = set()


class ConcurrencyFull(Error):
    """Every slot of a concurrency cap stayed held for the whole bounded wait (503)."""

    title = "Too many calls in flight"

    def __init__(self, message: str, *, retry_after_s: float, cap: str) -> None:
        super().__init__(message, hint="retry after the Retry-After seconds")
        self.retry_after_s = retry_after_s
        self.cap = cap


class Held:
    """The slots one call holds; `release` gives each back (idempotent), `end` too unless
    the call's processes run on past its answer (`runs_on`): then once they are gone."""

    __slots__ = ("_after", "_gone", "_runs_on", "_slots")

    def __init__(self) -> None:
        self._slots: list[tuple[ConcurrencyLimiter, Slot]] = []
        self._runs_on = False
        #: The processes that ran on are gone (`_finish` started): a step runs at once.
        self._gone = False
        self._after: list[Callable[[], Awaitable[None]]] = []

    def runs_on(self) -> Callable[[], None]:
        """The call answered but its processes run on (sandbox/pool.py, `RunsOn`): its slots
        stay held until then, so an early answer frees no slot of its caller or the node."""
        self._runs_on = True
        return self._release_soon

    def _release_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self._finish())
        _RELEASING.add(task)
        task.add_done_callback(_RELEASING.discard)

    async def after(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` now, or once the call's processes are gone if they run on past its
        answer (its compute is charged to then: gateway/invoke.py)."""
        if self._runs_on and not self._gone:
            self._after.append(step)
        else:
            # Gone already: they often end while the call's record is written, before its
            # caller comes here; a step kept then never ran (the call's compute was never
            # charged and its reservation held the quota for the day: ci54c).
            await step()

    async def _finish(self) -> None:
        self._gone = True
        while self._after:
            step = self._after.pop(0)
            try:
                await step()
            except Exception:
                log.exception("a step after a call's processes ended failed")
        await self.release()

    async def end(self) -> None:
        """The call has returned: give the slots back, unless its processes run on."""
        if not self._runs_on:
            await self.release()

    def end_now(self) -> bool:
        """`end` without a coroutine as far as it goes: the node's own (memory) slots given
        back at once, newest first, as `release` gives them. True if nothing is left to
        give back (or the processes run on: `end` does nothing then); else `end` gives
        the rest (a shared backend's slot, and every one under it)."""
        if self._runs_on:
            return True
        slots = self._slots
        while slots:
            limiter, slot = slots[-1]
            if type(limiter) is not MemoryConcurrencyLimiter:
                break
            slots.pop()
            try:
                limiter.release_now(slot)
            except Exception:
                log.exception("releasing a concurrency slot failed; its lease will free it")
        return not slots

    def add(self, limiter: ConcurrencyLimiter, slot: Slot) -> None:
        self._slots.append((limiter, slot))

    async def release(self) -> None:
        """Give every slot back, newest first; a backend that fails frees it by its lease."""
        while self._slots:
            limiter, slot = self._slots.pop()
            try:
                if type(limiter) is MemoryConcurrencyLimiter:
                    limiter.release_now(slot)  # (no coroutine for the node's own slots)
                else:
                    await limiter.release(slot)
            except Exception:
                log.exception("releasing a concurrency slot failed; its lease will free it")


async def hold_slots(
    node: Node,
    deployed: Deployed,
    principal: Principal | None,
    request_id: str,
    trigger: str,
    limits: tuple[int, float, int, int] | None = None,
) -> Held:
    """Take the call's slots (caller's, function's, node's) or raise `ConcurrencyFull`
    having given back the ones taken; cancellation gives them back too. `limits`: the
    principal's `caller_limits`, if already resolved (gateway/call_plan.py)."""
    held = Held()
    settings = node.settings
    wait_s = settings.sandbox.max_queue_wait_s
    lease_s = deployed.manifest.timeout_s + LEASE_MARGIN_S
    slots, node_slots = node.slots, node.node_slots
    # In order: the caller's, the function's across nodes (a shared backend only: on one
    # node the pool's own semaphore is that cap), the node's (always in its memory).
    caller = (
        (
            slots,
            concurrency_key(principal.label),
            (limits or caller_limits(node, principal))[3],
            "principal",
        )
        if principal is not None
        else None
    )
    function = (
        (
            slots,
            BucketKey(function=deployed.name, scope="concurrency"),
            deployed.manifest.limits.concurrency,
            "function",
        )
        if not isinstance(slots, MemoryConcurrencyLimiter)
        else None
    )
    own = (node_slots, NODE_KEY, settings.limits.max_concurrency, "node")
    try:
        for step in (caller, function, own):
            if step is None:
                continue
            limiter, key, cap, what = step
            # A free slot of the node's own (memory) limiter is taken at once, without a
            # coroutine (exactly that class: a shared backend, or any wrapper, is awaited);
            # a full key goes through `_take`, which waits its turn or refuses.
            slot = (
                limiter.try_acquire(key, cap, lease_s=lease_s)
                if type(limiter) is MemoryConcurrencyLimiter
                else None
            )
            if slot is not None:
                held._slots.append((limiter, slot))
            else:
                await _take(node, held, limiter, key, cap, wait_s, lease_s, what)
    except ConcurrencyFull as e:
        await held.release()
        await _audit(node, deployed, principal, request_id, trigger, e)
        raise
    except BaseException:
        await asyncio.shield(held.release())
        raise
    return held


async def _take(
    node: Node,
    held: Held,
    limiter: ConcurrencyLimiter,
    key: BucketKey,
    cap: int,
    wait_s: float,
    lease_s: float,
    what: str,
) -> None:
    slot = await limiter.acquire(key, cap, wait_s=wait_s, lease_s=lease_s)
    if slot is None:
        whose = {"principal": "your", "function": "the function's", "node": "the node's"}[what]
        raise ConcurrencyFull(
            f"{whose} concurrency limit ({cap} calls at once) stayed full for {wait_s:g}s",
            retry_after_s=max(1.0, wait_s),
            cap=what,
        )
    held.add(limiter, slot)


async def _audit(
    node: Node,
    deployed: Deployed,
    principal: Principal | None,
    request_id: str,
    trigger: str,
    error: ConcurrencyFull,
) -> None:
    node.metrics.rate_limited.labels(deployed.name, "concurrency").inc()
    actor = actor_of(principal, trigger)
    await node.denials.deny(
        AuditEvent(
            actor,
            "function.concurrency",
            f"{deployed.name}@{deployed.record.version}",
            "denied",
            {
                "request_id": request_id,
                "reason": f"{error.cap} concurrency limit",
                "cap": error.cap,
                "trigger": trigger,
            },
        ),
        "-",
        scope=deployed.name,
    )
