"""What the node does with async invocations, whoever asks (the gateway's routes, the
triggers' `node.submit`, the workers' destinations): enqueue, read, and the dead-letter
queue's redrive and purge. Each is audited; no record carries an event's body.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from donjon.audit import AuditEvent
from donjon.audit.changes import APPEND_RETRY_S, AuditedChanges, append_again
from donjon.triggers.envelope import Envelope
from donjon.triggers.queue.commit import CommitUnknown, stored_after
from donjon.triggers.queue.interface import (
    InvocationNotFound,
    InvocationQueue,
    QueuedInvocation,
    QueueError,
    QueueFull,
    RetryPolicy,
)
from donjon.triggers.queue.noted import EnqueueNotes, enqueue_event

__all__ = [
    "AsyncInvocations",
    "AuditSink",
    "FunctionPolicy",
    "Lookup",
    "Refused",
    "UnknownFunction",
]

log = logging.getLogger("donjon.queue")

_T = TypeVar("_T")

#: The most dead-lettered invocations one listing returns.
MAX_LISTED = 1000


class AuditSink(Protocol):
    """Where the queue's records go: the node's AuditLog (durable once what `record`
    returns has been awaited)."""

    def record(self, event: AuditEvent) -> Awaitable[None]: ...


class UnknownFunction(QueueError):
    """An event for a function that is not deployed: refused, nothing is queued."""

    title = "Not found"


@dataclass(frozen=True, slots=True)
class FunctionPolicy:
    """A deployed function's `retry` and `destinations` (manifest/delivery.py), and its
    `limits.queued`: the most invocations it may have pending (None: no bound)."""

    retry: RetryPolicy
    on_success: str | None = None
    on_failure: str | None = None
    queued: int | None = None
    #: The version deployed now: what an invocation queued now is for.
    version: int | None = None
    #: The first version of its owner run (store/functions.py `since_version`): an
    #: invocation queued for an older one was for a function removed since.
    since: int | None = None
    #: The most bytes of event a call of it takes (its `limits.body`, at most the node's):
    #: a destination record past it is queued with its payloads null.
    body: int | None = None
    #: Destinations whose function was removed and deployed again since this version's
    #: deploy checked them (lifecycle `Deployed.grant_holds`): no record goes to them.
    lapsed: frozenset[str] = frozenset()


#: Told of each enqueue refused because the function's queue is full (the node counts
#: and audits it: gateway/deliveries.py), before the refusal goes to its sender.
Refused = Callable[[Envelope, QueueFull], Awaitable[None]]


async def _ignore(envelope: Envelope, error: QueueFull) -> None:
    del envelope, error


def _log_failure(task: asyncio.Task[Any]) -> None:
    """An enqueue whose caller was cancelled, failed: logged (its notes say the rest)."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("an enqueue whose caller was cancelled failed: %r", error)


#: A deployed function's policy by name; None when it is not deployed.
Lookup = Callable[[str], FunctionPolicy | None]


class AsyncInvocations:
    """The node's async invocations over one queue."""

    def __init__(
        self,
        queue: InvocationQueue,
        audit: AuditSink,
        lookup: Lookup,
        changes: AuditedChanges | None = None,
    ) -> None:
        self.queue = queue
        self._audit = audit
        self._lookup = lookup
        #: A redrive or a purge and its record, committed together (audit/changes.py);
        #: without an outbox, recorded after the change (a queue tested alone).
        self._changes = changes if changes is not None else AuditedChanges(audit, None)
        #: Called after each enqueue (the workers wake at once instead of at their poll).
        self.on_enqueue: Callable[[], None] = lambda: None
        #: Called for each enqueue refused by the function's `limits.queued`.
        self.on_full: Refused = _ignore
        #: Each enqueue noted before its commit (triggers/queue/noted.py), in the node's
        #: journal of calls in flight once its start sets it (`notes.journal`).
        self.notes = EnqueueNotes()
        #: Enqueues begun, each run to its end whatever becomes of its caller (`_to_the_end`).
        self._finishing: set[asyncio.Task[Any]] = set()

    def policy(self, function: str) -> FunctionPolicy | None:
        return self._lookup(function)

    async def submit(self, envelope: Envelope) -> str:
        """Enqueue `envelope` (durable once this returns); its invocation id. The node's
        `Submit` (triggers/envelope.py)."""
        return (await self.enqueue(envelope)).id

    async def submit_all(self, envelopes: Sequence[Envelope]) -> list[str]:
        """Enqueue the envelopes of one function (the records of one message), all or
        none: `QueueFull` when they do not all fit under its `limits.queued`."""
        if not envelopes:
            return []
        first = envelopes[0]
        policy = self._policy_of(first.function)
        ids = [str(uuid.uuid4()) for _ in envelopes]  # (noted before the commit)
        events = [enqueue_event(e, i) for e, i in zip(envelopes, ids, strict=True)]
        notes = self.notes.take(events)
        await self._to_the_end(self._enqueue_all(envelopes, policy, ids, events, notes))
        return ids  # each accepted (one stored after a failed commit may have run and gone)

    async def _enqueue_all(
        self,
        envelopes: Sequence[Envelope],
        policy: FunctionPolicy,
        ids: list[str],
        events: list[AuditEvent],
        notes: list[int],
    ) -> list[QueuedInvocation]:
        try:
            queued = await self.queue.enqueue_all(
                envelopes,
                policy.retry,
                bound=policy.queued,
                version=policy.version,
                invocation_ids=ids,
            )
        except CommitUnknown as e:
            queued = await self._stored_anyway(ids, notes, e)
        except QueueFull as e:
            self.notes.forget(notes)
            await self.on_full(envelopes[0], e)
            raise
        except Exception:
            self.notes.forget(notes)  # nothing stored ("the request changed nothing": sql.py)
            raise
        await self._recorded(events, notes)
        self.on_enqueue()
        return queued

    async def enqueue(self, envelope: Envelope) -> QueuedInvocation:
        """Enqueue `envelope`; when `envelope.admitted` (its request passed admission just
        now), that admission stands for its first attempt's rate buckets and quotas.
        `QueueFull` (nothing queued) when the function has its `limits.queued` pending."""
        policy = self._policy_of(envelope.function)
        invocation_id = str(uuid.uuid4())
        event = enqueue_event(envelope, invocation_id)
        notes = self.notes.take((event,))
        return await self._to_the_end(self._enqueue(envelope, policy, invocation_id, event, notes))

    async def _enqueue(
        self,
        envelope: Envelope,
        policy: FunctionPolicy,
        invocation_id: str,
        event: AuditEvent,
        notes: list[int],
    ) -> QueuedInvocation:
        try:
            queued = await self.queue.enqueue(
                envelope,
                policy.retry,
                admitted=envelope.admitted,
                bound=policy.queued,
                version=policy.version,
                invocation_id=invocation_id,
            )
        except CommitUnknown as e:
            (queued,) = await self._stored_anyway([invocation_id], notes, e)
        except QueueFull as e:
            self.notes.forget(notes)
            await self.on_full(envelope, e)
            raise
        except Exception:
            self.notes.forget(notes)  # nothing stored ("the request changed nothing": sql.py)
            raise
        await self._recorded((event,), notes)
        self.on_enqueue()
        return queued

    async def _stored_anyway(
        self, ids: list[str], notes: list[int], error: CommitUnknown
    ) -> list[QueuedInvocation]:
        """After a commit that failed (triggers/queue/commit.py): the invocations stored
        all the same, recorded as any enqueue; else their notes freed and `error` raised.
        A database that does not answer leaves the notes (the next start records the rows
        it finds: noted.py), counted until then, and raises `error`."""
        try:
            stored = await stored_after(self.queue, ids)
        except QueueError as e:
            log.error("an enqueue's commit failed, and the database did not say: %s", e)
            raise error from None
        if stored is None:
            self.notes.forget(notes)
            raise error
        log.warning("an enqueue whose commit failed was stored (%d invocations)", len(ids))
        return stored

    async def _to_the_end(self, work: Coroutine[Any, Any, _T]) -> _T:
        """`work` (an enqueue, noted), run to its end whatever becomes of its caller: its
        commit runs in a thread a cancellation does not stop, so a caller cancelled then
        (a trigger's task at its function's redeploy: triggers/sources.py) would leave a
        row that runs with no record, and its note, never ended, counted in MAX_NOTED."""
        task = asyncio.get_running_loop().create_task(work)
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_log_failure)  # (its caller gone: nobody else reads it)
            raise

    async def settle(self) -> None:
        """Wait for the enqueues begun (their callers may be gone): before the audit
        writer stops (`Node.stop`)."""
        while self._finishing:
            await asyncio.wait(set(self._finishing))

    def _policy_of(self, function: str) -> FunctionPolicy:
        policy = self._lookup(function)
        if policy is None:
            raise UnknownFunction(f"no function named {function!r}", hint="donjon ls lists them")
        return policy

    async def _recorded(self, events: Sequence[AuditEvent], notes: list[int]) -> None:
        """Each committed enqueue's record, its note ended once the record is durable. An
        `AuditError` (the record not appended) leaves the notes of those not recorded:
        the next start appends their records (`record_noted`)."""
        self.notes.committed(notes)
        for n, event in enumerate(events):
            await self._audit_enqueue(event)
            if notes:
                self.notes.end(notes[n])

    async def _audit_enqueue(self, event: AuditEvent) -> None:
        """The enqueue's record: the event is queued, and runs, so an audit writer that dies
        now is waited for (APPEND_RETRY_S) rather than answered "not completed" (before, a
        500, and its client sent again an event that ran). A full storage is not waited
        for: its client gets a 503 at once."""
        await append_again(self._audit, event, APPEND_RETRY_S, while_full=False)

    async def pending(self, function: str | None = None) -> dict[str, int]:
        """How many invocations each function (or only `function`) has pending; those
        with none are left out."""
        return await self.queue.pending(function)

    async def get(self, invocation_id: str) -> QueuedInvocation | None:
        return await self.queue.get(invocation_id)

    async def dead(
        self,
        function: str | None,
        limit: int = MAX_LISTED,
        reaches: Callable[[str], bool] | None = None,
    ) -> list[QueuedInvocation]:
        """Dead-lettered invocations (of `function`, or of every function `reaches` says
        the reader may see), oldest first. The oldest of every function first and those
        it may see then: another function's older dead events filled the page and hid
        all of the reader's."""
        limit = min(limit, MAX_LISTED)
        if function is not None or reaches is None:
            return await self.queue.dead(function, limit)
        named = await self.queue.dead_functions()
        seen = [name for name in named if reaches(name)]
        return await self.queue.dead(None if seen == named else seen, limit)

    async def redrive(self, invocation_id: str, actor: str, request_id: str) -> QueuedInvocation:
        """Queue one dead invocation again under its function's current `retry`."""
        found = await self.queue.get(invocation_id)
        if found is None:
            raise InvocationNotFound(
                f"no dead-lettered invocation {invocation_id[:64]!r}",
                hint="donjon dlq ls lists them",
            )
        policy = self._lookup(found.function)
        event = AuditEvent(
            actor,
            "invocation.redrive",
            found.function,
            "ok",
            {"invocation_id": found.id, "request_id": request_id},
        )
        try:
            async with self._changes.change(event):
                redriven = await self.queue.redrive(
                    invocation_id,
                    policy.retry if policy else None,
                    bound=policy.queued if policy else None,
                    version=policy.version if policy else None,
                )
        except QueueFull as e:  # left dead: the refusal is recorded, as an enqueue's is
            await self._audit.record(
                AuditEvent(
                    actor,
                    "invocation.redrive",
                    found.function,
                    "refused",
                    {**event.detail, "reason": e.reason, "bound": e.bound},
                )
            )
            raise
        self.on_enqueue()
        return redriven

    async def redrive_all(self, function: str, actor: str, request_id: str) -> list[str]:
        """Queue again every dead invocation of `function`; their ids. Stops at the
        function's `limits.queued`: `QueueFull` saying how many were redriven (the rest
        stay dead, to redrive once the queue drains)."""
        done: list[str] = []
        for invocation_id in await self.queue.dead_ids(function):
            try:
                await self.redrive(invocation_id, actor, request_id)
            except InvocationNotFound:  # redriven or purged meanwhile (another admin, node)
                continue
            except QueueFull as e:
                e.message += f"; {len(done)} redriven, the rest left in the dead-letter queue"
                raise
            done.append(invocation_id)
        return done

    async def purge(self, function: str | None, actor: str, request_id: str) -> int:
        """Delete the dead-lettered invocations (of `function`, or all); how many."""
        event = AuditEvent(  # and "purged", the count, from the store
            actor, "invocation.purge", function or "*", "ok", {"request_id": request_id}
        )
        async with self._changes.change(event):
            return await self.queue.purge(function)
