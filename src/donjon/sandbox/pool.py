"""The sandbox pool: the sandboxes of every function version.

`invocation` functions get one sandbox per version whose supervisor hands
each call to a fresh worker, so calls run concurrently up to the function's
limit. `warm` functions get up to `concurrency` sandboxes, each serving one
call at a time. Idle sandboxes are reaped; a new version or a removal retires the old,
and then the staged bundles nothing uses any more are removed (host.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from donjon.deadlines import Deadlines, deadlines
from donjon.sandbox.backlog import Backlog, QueueBounds, ServiceTime
from donjon.sandbox.egresslink import EgressOpener
from donjon.sandbox.errors import (
    CallShed,
    FunctionBlocked,
    FunctionCrashed,
    FunctionMemoryExceeded,
    FunctionTimeout,
    SandboxUnavailable,
    TooManyInvocations,
)
from donjon.sandbox.host import SandboxHost
from donjon.sandbox.instance import CallResult, Instance, InstanceConfig
from donjon.sandbox.limits import ResourceControl
from donjon.sandbox.seccomp import Filters
from donjon.sandbox.standing import StandingQueue
from donjon.sandbox.subcalls import SubCall

__all__ = ["RunsOn", "SandboxPool"]

_QUEUE_WAIT_S = 5.0
#: Calls the sandbox ended by killing them: a line each in the server's log (with the
#: request id the gateway bound: obs/logging.py); a function's own failure is not one.
_KILLS = (FunctionTimeout, FunctionMemoryExceeded, FunctionBlocked)

log = logging.getLogger("donjon.sandbox")


#: Told that a call's processes run on after its answer; returns what to call once
#: they are gone (gateway/slots.py: its concurrency slots are held until then).
RunsOn = Callable[[], Callable[[], None]]


@dataclass
class _Slot:
    """Everything running for one function version."""

    config: InstanceConfig
    gate: asyncio.Semaphore
    instances: list[Instance] = field(default_factory=list)
    #: Replaced or removed: no new calls, no new sandboxes.
    retired: bool = False
    starting: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Calls waiting for a free slot now (bounded: backlog.py), and calls between
    #: taking the slot from the pool and the end of their call (or their failure).
    waiting: int = 0
    calls: int = 0
    service: ServiceTime = field(default_factory=ServiceTime)
    #: Whether the wait for a slot is a standing queue (standing.py), not a burst.
    queue: StandingQueue = field(default_factory=StandingQueue)


def _locked(gate: asyncio.Semaphore) -> bool:
    """`gate.locked()`, as asked for every call (twice before it runs, again as it runs):
    with no waiter (most calls) its answer is `_value == 0`, read here without its
    generator over the waiters (three Python calls); with waiters it is asked as is.
    tests/sandbox/test_gate_locked.py compares the two over random states."""
    return gate._value == 0 or (bool(gate._waiters) and gate.locked())


def _queue_full(slot: _Slot, shed: CallShed, now: float) -> None:
    """`slot`'s call was refused with `shed` at `now`: its queue is full, and the refusal
    counts towards its overflow (standing.py), unless the node's bound alone refused it
    (other functions' calls filled the node's)."""
    if not shed.node_only:
        slot.queue.refused()
        slot.queue.overflowed(now)


class SandboxPool:
    """Runs calls in sandboxes, starting them on first use (the cold start)."""

    def __init__(
        self,
        resources: ResourceControl,
        filters: Filters,
        host: SandboxHost,
        idle_timeout_s: float = 300.0,
        egress: EgressOpener | None = None,
        bounds: QueueBounds | None = None,
    ) -> None:
        self._resources = resources
        #: The node's egress proxy: sandboxes of functions granted egress reach it.
        self._egress = egress
        self._filters = filters
        self._host = host
        self._idle_timeout_s = idle_timeout_s
        #: Who may wait for a free slot (backlog.py); the rest are shed with 503.
        self.backlog = Backlog(bounds or QueueBounds(wait_s=_QUEUE_WAIT_S))
        self._slots: dict[tuple[str, int], _Slot] = {}
        self._draining: set[Instance] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Future[None]] = set()
        #: Sandboxes started for a call that found none ready (read by the node's metrics).
        self.cold_starts = 0
        #: The loop's timeouts of waits for a slot (deadlines.py), once a call waited.
        self._deadlines: Deadlines | None = None
        #: Closed (the node stopping): no call starts, so no sandbox outlives the pool.
        self._closed = False

    def start(self) -> None:
        self._reaper = asyncio.get_running_loop().create_task(self._reap_idle())

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for key in list(self._slots):
            await self._retire_slot(key)
        for inst in list(self._draining):
            await inst.close()
        self._draining.clear()
        for task in list(self._closing):
            await task

    async def invoke(
        self,
        config: InstanceConfig,
        meta: bytes,
        event: bytes,
        timeout_s: float,
        subcalls: SubCall | None = None,
        request_id: str = "",
        runs_on: RunsOn | None = None,
    ) -> CallResult:
        """Run one call of `config`; `subcalls` answers its handler's `context.invoke`;
        `request_id` names the call in the egress proxy's records; `runs_on` is told
        of a call whose processes run on after this returns (an invocation that answered
        early): what it returns is called once they are gone."""
        if self._closed:  # (a test, not a call: this runs for every call)
            self._refuse_closed()
        key = (config.function, config.version)
        slot = self._slots.get(key) or self._new_slot(config)
        slot.calls += 1  # before any await: the reaper leaves this slot alone
        try:
            return await self._invoke_in(
                slot, meta, event, timeout_s, subcalls, request_id, runs_on
            )
        finally:
            slot.calls -= 1

    async def _invoke_in(
        self,
        slot: _Slot,
        meta: bytes,
        event: bytes,
        timeout_s: float,
        subcalls: SubCall | None,
        request_id: str,
        runs_on: RunsOn | None,
    ) -> CallResult:
        config = slot.config
        try:
            if _locked(slot.gate):
                await self._wait_for_slot(slot)
            else:
                await slot.gate.acquire()  # free: returns without suspending
                slot.queue.took_free_slot()
        except TimeoutError:
            raise TooManyInvocations(
                f"{config.function} is at its concurrency limit ({config.concurrency})",
                hint="retry later, or raise limits.concurrency in donjon.yaml",
            ) from None
        try:
            instance = await self._instance_for(slot, cold=True)
        except BaseException:
            slot.gate.release()
            raise
        # The slot is freed when the call's processes are gone, which for an
        # invocation may be after its answer (sandbox/instance.py, `call`).
        closing: list[asyncio.Future[None]] = []
        gone: list[Callable[[], None]] = []  # what `runs_on` asked to be told
        processes_gone = False

        def over() -> None:
            nonlocal processes_gone
            processes_gone = True
            closing.extend(self._call_over(slot, instance))
            for then in gone:
                then()

        started = time.monotonic()
        try:
            return await instance.call(meta, event, timeout_s, over, subcalls, request_id)
        except _KILLS as e:
            log.warning("%s@%s killed: %s", config.function, config.version, e.message)
            raise
        finally:
            if not processes_gone and runs_on is not None:  # they run on: `over` comes later
                gone.append(runs_on())
            ended = time.monotonic()
            slot.service.note(ended - started)
            slot.queue.served(ended)
            for task in closing:  # a sandbox that ended with this call: closed before we answer
                await task

    def check_capacity(self, config: InstanceConfig) -> None:
        """Raise `CallShed` now if a call of `config` would be shed were it made now
        (the gateway asks before it reads a request's body: a shed call costs little)."""
        slot = self._slots.get((config.function, config.version))
        if slot is not None and _locked(slot.gate):
            self._admit(slot, slot.waiting)

    def check_in_flight(self, config: InstanceConfig, in_flight: int) -> None:
        """`check_capacity` for a call whose request head was just read, with `in_flight`
        calls of the function let through whose way to this pool has not begun: they
        count as waiting too (gateway/early_shed.py)."""
        slot = self._slots.get((config.function, config.version))
        if slot is None:
            return
        locked = _locked(slot.gate)
        if locked:
            # No slot is free: every call let through will wait behind those waiting
            # now. Counting only the larger of the two let a turn's heads through that
            # `admit` then refused after the whole app path, at about four times the
            # cost of a refusal here (docs/performance.md, "the fourteenth round").
            ahead = slot.waiting + in_flight
        else:  # a slot is free, nobody waits: the queue has drained
            slot.queue.took_free_slot()
            spare = in_flight - config.concurrency  # some take free slots
            ahead = slot.waiting if slot.waiting >= spare else spare  # (`max`, inline)
        if ahead > 0 or locked:
            # Not a refusal yet: the gateway sheds only an invoker's call (`refused_at_head`).
            self._admit(slot, ahead, refusing=False)

    def refused_at_head(
        self, config: InstanceConfig, shed: CallShed, *, counts: bool = True
    ) -> None:
        """The gateway shed a call `check_in_flight` refused with `shed` (counting the
        calls waiting and, of the heads let through before it, those that will queue:
        early_shed.py): counted in `backlog.shed`; its queue is full, and the refusal
        counts towards its overflow (standing.py), unless the node's bound alone refused
        it or the caller does not count (`counts`: one its own limits refuse, whose call
        would never have queued)."""
        self.backlog.shed += 1
        slot = self._slots.get((config.function, config.version))
        if slot is not None and counts:
            _queue_full(slot, shed, time.monotonic())

    def _admit(self, slot: _Slot, ahead: int, *, refusing: bool = True) -> None:
        """`Backlog.admit` for one more call of `slot` with `ahead` waiting, with its
        target while its queue stands or overflows (standing.py), which a refusal tells
        it is full (`refusing`: the call is refused if this raises, and counts towards
        the overflow)."""
        service_s = slot.service.seconds
        now = time.monotonic()
        try:
            self.backlog.admit(
                slot.config.function,
                ahead,
                slot.config.concurrency,
                service_s,
                slot.queue.budget(self.backlog.bounds.shed, service_s, now),
                refusing=refusing,
            )
        except CallShed as e:
            if refusing:  # `ahead` is the function's own waiting calls here
                _queue_full(slot, e, now)
            raise

    async def _wait_for_slot(self, slot: _Slot) -> None:
        """Wait, bounded in count and time, for a slot of a function at its limit."""
        backlog = self.backlog
        self._admit(slot, slot.waiting)
        timeouts = self._deadlines
        if timeouts is None:
            timeouts = self._deadlines = deadlines()
        slot.waiting += 1
        backlog.waiting += 1
        admitted = time.monotonic()
        try:
            async with timeouts.timeout(backlog.bounds.wait_s):
                await slot.gate.acquire()
        finally:
            slot.waiting -= 1
            backlog.waiting -= 1
        # CoDel's test as the call leaves the queue (standing.py).
        now, shed, service_s = time.monotonic(), backlog.bounds.shed, slot.service.seconds
        slot.queue.waited(now - admitted, now, shed.target(service_s), shed.interval(service_s))

    @staticmethod
    def _refuse_closed() -> NoReturn:
        """A call or a start once the pool is closed (the node stopping) is refused: a
        sandbox started now would outlive the pool, with nothing left to stop it."""
        raise SandboxUnavailable(
            "the node is stopping: no call starts", hint="call again once it is up"
        )

    def _new_slot(self, config: InstanceConfig) -> _Slot:
        slot = _Slot(config, asyncio.Semaphore(config.concurrency))
        self._slots[(config.function, config.version)] = slot
        self._host.pin(config.bundle, slot)  # until the version is retired
        return slot

    async def _close_and_collect(self, instance: Instance) -> None:
        """Close a drained sandbox, then remove the staged bundles nothing holds any more."""
        await instance.close()
        await asyncio.to_thread(self._host.collect_staging)

    def _call_over(self, slot: _Slot, instance: Instance) -> list[asyncio.Future[None]]:
        """A call's processes are gone: free its slot; close its sandbox if that is done too."""
        slot.gate.release()
        done = instance.closed or ((slot.retired or instance.recycled) and instance.active == 0)
        if not (done and instance in slot.instances):
            return []
        slot.instances.remove(instance)
        self._draining.discard(instance)
        task = asyncio.ensure_future(self._close_and_collect(instance))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return [task]

    async def _instance_for(self, slot: _Slot, *, cold: bool = False) -> Instance:
        if slot.retired:  # queued behind calls of a version since replaced
            raise FunctionCrashed(
                f"{slot.config.function} version {slot.config.version} "
                "was replaced while this call waited",
                hint="retry",
            )
        if slot.config.warm:
            for inst in slot.instances:
                # call() counts itself active before its first await, so no
                # other task can take this instance in between.
                if inst.active == 0 and not inst.closed and not inst.recycled:
                    return inst
        else:
            live = [i for i in slot.instances if not i.closed]
            if live:
                return live[0]
        async with slot.starting:
            if not slot.config.warm:
                live = [i for i in slot.instances if not i.closed]
                if live:
                    return live[0]
            inst = Instance(slot.config, self._resources, self._filters, self._host, self._egress)
            await inst.start()
            self.cold_starts += cold
            if slot.retired:  # replaced or removed while this sandbox started: nobody's
                await inst.close()
                raise FunctionCrashed(
                    f"{slot.config.function} version {slot.config.version} "
                    "was replaced or removed while its sandbox started",
                    hint="retry",
                )
            slot.instances.append(inst)
            return inst

    async def prestart(self, config: InstanceConfig) -> None:
        """Start a sandbox for `config` now, so its first call is not a cold start.

        Raises what the start raises (an import error is `FunctionFailed`).
        """
        if self._closed:
            self._refuse_closed()
        key = (config.function, config.version)
        slot = self._slots.get(key) or self._new_slot(config)
        slot.calls += 1  # the reaper leaves a slot alone while its sandbox starts
        try:
            await self._instance_for(slot)
        except BaseException:
            await self._retire_slot(key)
            raise
        finally:
            slot.calls -= 1

    async def retire_version(self, function: str, version: int) -> None:
        """Stop the sandboxes of one version (a deploy that did not go through)."""
        await self._retire_slot((function, version))

    async def retire(
        self, function: str, keep_version: int | None = None, *, drain: bool = False
    ) -> None:
        """Stop every sandbox of `function` except those of `keep_version`.

        With `drain` (a new version took over), calls in flight finish first;
        otherwise (the function was removed) they end now.
        """
        for key in [k for k in self._slots if k[0] == function and k[1] != keep_version]:
            await self._retire_slot(key, drain=drain)

    async def recycle(self, function: str) -> int:
        """Start `function`'s warm sandboxes afresh: idle ones close now, busy ones once
        their calls end, and new calls get new ones. A secret granted to it changed, and a
        warm worker may keep what an earlier call gave it (a module global): printed
        later, the old value was redacted by no call, whose redactor knows the new one
        only. (A one-call worker holds nothing across calls.) How many were recycled."""
        count = 0
        for key, slot in list(self._slots.items()):
            if key[0] != function or not slot.config.warm:
                continue
            for inst in list(slot.instances):
                count += 1
                inst.recycled = True
                if inst.active == 0:
                    slot.instances.remove(inst)
                    await inst.close()
        return count

    async def _retire_slot(self, key: tuple[str, int], *, drain: bool = False) -> None:
        slot = self._slots.pop(key, None)
        if slot is None:
            return
        slot.retired = True
        self._host.unpin(slot.config.bundle, slot)  # a draining sandbox holds its own pin
        for inst in list(slot.instances):
            if drain and inst.active:
                self._draining.add(inst)
                continue  # closed by invoke() when its last call ends
            slot.instances.remove(inst)
            await inst.close()
        await asyncio.to_thread(self._host.collect_staging)

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, self._idle_timeout_s / 2))
            now = time.monotonic()
            for key, slot in list(self._slots.items()):
                for inst in list(slot.instances):
                    if inst.active == 0 and now - inst.last_used > self._idle_timeout_s:
                        slot.instances.remove(inst)
                        await inst.close()
                if self._unused(slot) and self._slots.get(key) is slot:
                    # Nothing runs, starts or waits: the slot goes too, so an idle node
                    # holds nothing per function (the next call makes it again: a cold
                    # start, as it would have been without it).
                    del self._slots[key]
                    self._host.unpin(slot.config.bundle, slot)
            await asyncio.to_thread(self._host.collect_staging)

    @staticmethod
    def _unused(slot: _Slot) -> bool:
        """No sandbox, no call holding or awaiting a slot, no sandbox starting."""
        return (
            not slot.instances
            and slot.calls == 0
            and slot.waiting == 0
            and not slot.starting.locked()
        )

    def running(self) -> int:
        return sum(len(s.instances) for s in self._slots.values())

    def sizes(self) -> dict[str, tuple[int, int]]:
        """Per function, its sandboxes serving a call and those idle (draining ones apart)."""
        sizes: dict[str, tuple[int, int]] = {}
        for (function, _), slot in self._slots.items():
            busy, idle = sizes.get(function, (0, 0))
            for inst in slot.instances:
                if inst.active:
                    busy += 1
                else:
                    idle += 1
            sizes[function] = (busy, idle)
        return sizes

    def holds(self, digest: str) -> bool:
        """Whether a version or sandbox of this pool uses the bundle `digest` (a draining
        one of a replaced version too): its tree must stay."""
        return self._host.pinned(digest)

    def draining(self) -> int:
        """Sandboxes of replaced versions still finishing their calls."""
        return len(self._draining)
