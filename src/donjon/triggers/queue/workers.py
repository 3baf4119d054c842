"""The node's queue workers: lease due invocations, run each (a bounded number at once,
DONJON_QUEUE_WORKERS), record its outcome, retry or dead-letter it, and hand outcomes
to the function's destinations.

The lease is renewed while the call runs (every third of DONJON_QUEUE_LEASE_S), so only
a node that stops renewing (it died, or its database is unreachable) loses it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping

from donjon.audit import AuditEvent
from donjon.audit.changes import APPEND_RETRY_S, append_again
from donjon.errors import Error
from donjon.store.trim import CountedTrim
from donjon.triggers.envelope import Envelope
from donjon.triggers.queue.destinations import (
    DestinationLapsed,
    check_caller,
    check_chain,
    destination_event,
    destination_record,
    record_type,
)
from donjon.triggers.queue.finished import DEFAULT_KEEP_SUCCEEDED
from donjon.triggers.queue.interface import Lease, QueuedInvocation, QueueError
from donjon.triggers.queue.retry import Outcome, next_attempt, throttled
from donjon.triggers.queue.service import AsyncInvocations, AuditSink, FunctionPolicy

__all__ = ["Deliver", "QueueWorkers", "destination_record"]  # the record: destinations.py

log = logging.getLogger("donjon.queue")

#: How often succeeded invocations past the retention (DONJON_LOG_RETENTION_DAYS) go.
PRUNE_INTERVAL_S = 3600.0
#: Runs one invocation as a call with every control; never raises.
Deliver = Callable[[QueuedInvocation], Awaitable[Outcome]]


#: Audits a throttled attempt in aggregate (the node's `denials`, audit/denials.py).
Refusals = Callable[[AuditEvent], Awaitable[None]]
#: Each deployed function's owner, by name ("" when not kept).
Owners = Callable[[], Mapping[str, str]]
#: `destination_event(invocation, outcome, limit)`: the node's makes a record of large
#: payloads in a child process (gateway/deliveries.py), the loop free meanwhile.
MakeRecord = Callable[[QueuedInvocation, Outcome, int | None], Awaitable[bytes]]


async def _made_here(invocation: QueuedInvocation, outcome: Outcome, limit: int | None) -> bytes:
    """`destination_event` on the loop (workers without a node's `make_record`: tests)."""
    return destination_event(invocation, outcome, limit)


def _removed_since(invocation: QueuedInvocation, policy: FunctionPolicy) -> bool:
    """Whether `invocation` was queued for a function since removed (its name deployed
    again, perhaps by another owner): the destinations of the function deployed now are
    not that function's, and its record (the caller's event as requestPayload) must not
    reach them."""
    return (
        invocation.version is not None
        and policy.since is not None
        and invocation.version < policy.since
    )


class QueueWorkers:
    """A poller that claims due invocations while fewer than `workers` run."""

    def __init__(
        self,
        service: AsyncInvocations,
        deliver: Deliver,
        audit: AuditSink,
        *,
        workers: int,
        lease_s: float,
        poll_s: float,
        keep_s: float = 30 * 86400.0,
        keep_succeeded: int = DEFAULT_KEEP_SUCCEEDED,
        rng: random.Random | None = None,
        refusals: Refusals | None = None,
        owners: Owners | None = None,
        make_record: MakeRecord | None = None,
    ) -> None:
        self._service = service
        #: How a destination's record is made (its event: up to two parsed payloads).
        self._make_record = make_record if make_record is not None else _made_here
        #: Each deployed function's owner: a claim counts the calls running by owner.
        self._owners = owners
        #: Where a throttled attempt's record goes, aggregated (audit/denials.py); None:
        #: each is a record of its own.
        self._refusals = refusals
        self._queue = service.queue
        self._deliver = deliver
        self._audit = audit
        self._workers = workers
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._keep_s = keep_s
        #: Each function's succeeded invocations held to its newest (queue/finished.py).
        self._succeeded = CountedTrim(
            "succeeded invocations", self._queue.trim_succeeded, keep_succeeded
        )
        self._pruned_at = 0.0
        self._rng = rng or random.SystemRandom()
        self._wake = asyncio.Event()
        #: The deliveries running, each with its function (a claim takes the others' first).
        self._running: dict[asyncio.Task[None], str] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: Set by `stop`: the loop claims nothing more and ends (it is not cancelled:
        #: Python 3.11's wait_for can lose a cancellation that meets its timeout).
        self._closed = False
        service.on_enqueue = self._wake.set

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="queue-workers")

    async def stop(
        self, grace_s: float = 0.0, end_calls: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Claim nothing more; give the deliveries in flight `grace_s` to end, then
        `end_calls` (the node ends their sandboxes): each call so ended is queued again,
        its attempt given back (the node stopping is not the event's fault)."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace_s)
        if self._running:
            self._stopping = True
            if end_calls is not None:
                await end_calls()
            await asyncio.gather(*self._running, return_exceptions=True)
        await self._succeeded.close()

    async def _loop(self) -> None:
        while not self._closed:
            await self._prune()
            free = self._workers - len(self._running)
            leases: list[Lease] = []
            if free > 0:
                try:
                    calls = self._by_owner(collections.Counter(self._running.values()))
                    leases = await self._queue.claim(free, self._lease_s, calls)
                except QueueError as e:
                    log.warning("claiming async invocations failed: %s", e.message)
            if self._closed:  # stopped during the claim: give them back, untouched
                for lease in leases:
                    try:
                        await self._queue.fail(
                            lease,
                            "NodeStopping",
                            "the node stopped",
                            None,
                            time.time(),
                            charge=False,
                        )
                    except QueueError as e:  # its lease expires: claimed again then
                        log.warning("giving back %s failed: %s", lease.invocation.id, e.message)
                return
            for lease in leases:
                task = asyncio.get_running_loop().create_task(self._guarded(lease))
                self._running[task] = lease.invocation.function
                task.add_done_callback(self._done)
            if free > 0 and len(leases) == free:
                continue  # more may be due now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
            if not self._closed:
                self._wake.clear()

    async def _prune(self) -> None:
        """Forget succeeded invocations older than the retention, and each deployed
        function's past its newest `keep_succeeded` (counts a restart lost), once an hour."""
        now = time.time()
        if now - self._pruned_at < PRUNE_INTERVAL_S:
            return
        self._pruned_at = now
        try:
            await self._queue.prune(now - self._keep_s)
        except QueueError as e:
            log.warning("pruning succeeded invocations failed: %s", e.message)
        await self._succeeded.trim_all(self._owners().keys() if self._owners is not None else ())

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._wake.set()  # a worker is free

    def _by_owner(self, calls: collections.Counter[str]) -> Mapping[str, int]:
        """What a claim orders functions by: for each function, the calls running of every
        function its owner has (a function deployed before owners were kept, or removed
        since, counts alone). Counted by function, an owner spreading its backlog over more
        functions than there are workers always had one with none running, and another
        owner's event waited behind all of that backlog."""
        if not calls or self._owners is None:
            return calls
        owner_of = self._owners()
        running: collections.Counter[str] = collections.Counter()
        for function, count in calls.items():
            running[owner_of.get(function) or function] += count
        weights = {f: running[o] for f, o in owner_of.items() if o and running[o]}
        return {**calls, **weights}

    async def _guarded(self, lease: Lease) -> None:
        try:
            await self._one(lease)
        except Exception:  # one delivery must never stop the others
            log.exception("async invocation %s: recording its outcome failed", lease.invocation.id)

    async def _one(self, lease: Lease) -> None:
        invocation = lease.invocation
        now = time.time()
        if invocation.attempts > invocation.retry.attempts:
            # Claimed again after its last attempt's lease expired: the node running it died.
            failed = Outcome(
                False,
                None,
                status=500,
                error_type="LeaseExpired",
                error="the node running its last attempt stopped before it ended",
            )
            await self._record(lease, failed, None)
            return
        if now > invocation.enqueued_at + invocation.retry.max_age_s:
            old = Outcome(
                False,
                None,
                status=400,
                error_type="EventAgeExceeded",
                error=f"older than the function's max_age_s ({invocation.retry.max_age_s} s)",
                ran=False,
            )
            await self._record(lease, old, None)
            return
        renewing = asyncio.get_running_loop().create_task(self._renew(lease))
        try:
            outcome = await self._deliver(invocation)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        if self._stopping and not outcome.ok:  # the node ended it: not the event's fault
            await self._queue.fail(
                lease,
                "NodeStopping",
                "the node stopped during the call",
                outcome.request_id,
                time.time(),
                charge=False,
            )
            await self._audit_attempt(invocation, outcome, "requeued", time.time())
            return
        retry_at = None if outcome.ok else next_attempt(invocation, outcome, time.time(), self._rng)
        await self._record(lease, outcome, retry_at)

    async def _renew(self, lease: Lease) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                if not await self._queue.renew(lease, self._lease_s):
                    log.warning("async invocation %s: its lease was lost", lease.invocation.id)
                    return
            except QueueError as e:
                log.warning("renewing the lease of %s failed: %s", lease.invocation.id, e.message)

    async def _record(self, lease: Lease, outcome: Outcome, retry_at: float | None) -> None:
        invocation = lease.invocation
        if outcome.ok or retry_at is None:
            # Its destination's record first: written after the outcome, a node killed in
            # between lost it for good (the outcome said there was nothing left to do).
            # Queued first, a kill in between runs the event again once its lease expires
            # and queues a second record: at least once, as the event itself.
            await self._destination(invocation, outcome)
        if outcome.ok:
            kept = await self._queue.succeed(lease, outcome.result, outcome.request_id or "")
            if kept:
                self._succeeded.note(lease.invocation.function)
        else:
            kept = await self._queue.fail(
                lease,
                outcome.error_type,
                outcome.error,
                outcome.request_id,
                retry_at,
                charge=not throttled(outcome),
            )
        if not kept:  # another node holds it now; its outcome will be the one recorded
            log.warning("async invocation %s: lease lost, outcome not recorded", invocation.id)
            return
        state = "succeeded" if outcome.ok else ("failed" if retry_at is not None else "dead")
        await self._audit_attempt(invocation, outcome, state, retry_at)
        if not outcome.ok and retry_at is None:
            await self._append(
                AuditEvent(
                    "system",
                    "invocation.dead",
                    invocation.function,
                    outcome.error_type or "error",
                    {"invocation_id": invocation.id, "attempts": invocation.attempts},
                )
            )

    async def _audit_attempt(
        self, invocation: QueuedInvocation, outcome: Outcome, state: str, retry_at: float | None
    ) -> None:
        detail: dict[str, object] = {
            "invocation_id": invocation.id,
            "attempt": invocation.attempts,
            "status": outcome.status,
            "state": state,
            "trigger": invocation.trigger,
        }
        if outcome.request_id:
            detail["request_id"] = outcome.request_id
        if retry_at is not None:
            detail["retry_in_s"] = round(max(0.0, retry_at - time.time()), 3)
        event = AuditEvent(
            "system",
            "invocation.attempt",
            invocation.function,
            "ok" if outcome.ok else (outcome.error_type or "error"),
            detail,
        )
        if self._refusals is not None and throttled(outcome) and state == "failed":
            # Refused before it ran, given back: a backlog held by a rate tried each event
            # again at every Retry-After, a record each time (N events, N records a
            # second at 1 call a second: hE-52). Aggregated, as the refusal itself is.
            await self._refusals(event)
            return
        await self._append(event)

    async def _append(self, event: AuditEvent) -> None:
        """The record of an outcome already stored: an audit writer that dies now is waited
        for while it is replaced (before, the record was lost: an event dead-lettered or
        succeeded with no record of it). A full storage is not waited for."""
        await append_again(self._audit, event, APPEND_RETRY_S, while_full=False)

    async def _destination(self, invocation: QueuedInvocation, outcome: Outcome) -> None:
        policy = self._service.policy(invocation.function)
        if policy is None:
            return
        target = policy.on_success if outcome.ok else policy.on_failure
        if target is None:
            return
        try:
            if _removed_since(invocation, policy):
                raise DestinationLapsed(
                    f"{invocation.function} was removed and deployed again since this"
                    " invocation was queued: its destinations are the new function's",
                    hint="redrive it (dlq:manage) to send it to the function deployed now",
                )
            if target in policy.lapsed:
                raise DestinationLapsed(
                    f"{target} was removed and deployed again since {invocation.function}"
                    " was deployed",
                    hint=f"deploy {invocation.function} again to name the new {target}",
                )
            check_caller(invocation, outcome, target)  # a revoked key's event: none
            # A chain of records (a function naming itself, a ring) ends at its bound.
            await check_chain(invocation, target, self._service.get)
            to = self._service.policy(target)
            event = await self._make_record(invocation, outcome, to.body if to else None)
            await self._service.enqueue(
                Envelope(
                    function=target,
                    event=event,
                    trigger="invoke",
                    source=f"/functions/{invocation.function}",
                    type=record_type(outcome.ok),
                    subject=invocation.id,
                )
            )
        except Error as e:
            # The original keeps its outcome (succeeded, or dead in the dead-letter queue,
            # where it can be redriven); the record it would have sent is not queued. A
            # full destination queue (QueueFull) is not waited for: the worker goes on;
            # nor is a chain at its bound (DestinationChainTooLong) gone on with.
            log.warning("destination %s of %s: %s", target, invocation.function, e.message)
            await self._audit.record(
                AuditEvent(
                    "system",
                    "invocation.destination",
                    invocation.function,
                    "refused",
                    {
                        "invocation_id": invocation.id,
                        "destination": target,
                        "condition": "success" if outcome.ok else "failure",
                        "reason": e.message[:300],
                    },
                )
            )
