"""The durable queue of async invocations: its role, its values and its base error.

An invocation is enqueued (committed) before its caller is answered; a worker of a
node then *leases* it (a lease token and an expiry), runs it, and records its
outcome under that token. A node that dies mid-call leaves its lease behind; once
it expires the row is claimed again: delivery is at least once, and the window in
which one event may run twice is one lease (DONJON_QUEUE_LEASE_S) after a node dies
between the end of a call and the write of its outcome (docs/triggers.md).

One implementation per module: `sql.py` (the node's own database).
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from donjon.errors import Error
from donjon.triggers.envelope import Envelope

__all__ = [
    "PENDING",
    "BatchOverBound",
    "DeadLettersFull",
    "InvocationNotFound",
    "InvocationQueue",
    "Lease",
    "QueueError",
    "QueueFull",
    "QueuedInvocation",
    "RetryPolicy",
    "Status",
]


class QueueError(Error):
    """The queue of async invocations could not do what was asked."""

    title = "Queue error"


class InvocationNotFound(QueueError):
    """No invocation (or none in the state asked for) has that id."""

    title = "Not found"


#: Seconds a refusal for a full queue tells its sender to wait (`Retry-After`): the
#: queue drains at the function's own pace, which the node cannot promise.
QUEUE_FULL_RETRY_AFTER_S = 5.0


class QueueFull(QueueError):
    """The function already has its bound (`limits.queued`) of invocations pending:
    nothing of what was asked was queued. The sender may try again later."""

    title = "Queue full"
    #: The limit that refused, as counted and audited (`donjon_rate_limited_total`).
    limit = "queued"
    reason = "queue full"

    def __init__(
        self, function: str, bound: int, wanted: int = 1, *, message: str = "", hint: str = ""
    ) -> None:
        more = f" ({wanted} more asked)" if wanted > 1 else ""
        super().__init__(
            message
            or f"the queue of function {function} is full: {bound} invocations pending{more}",
            hint=hint or "try again later; its owner may raise limits.queued or add capacity",
        )
        self.function = function
        self.bound = bound
        self.wanted = wanted
        self.retry_after_s = QUEUE_FULL_RETRY_AFTER_S


class DeadLettersFull(QueueFull):
    """The function already has its bound (DONJON_QUEUE_MAX_DEAD) of dead-lettered
    invocations: nothing new is queued until some are redriven or purged. The dead are
    never dropped to make room (each was an accepted event); refusing new input instead
    tells its sender to keep it, as a full queue does."""

    limit = "dead"
    reason = "dead-letter queue full"

    def __init__(self, function: str, bound: int, wanted: int = 1) -> None:
        super().__init__(
            function,
            bound,
            wanted,
            message=f"the dead-letter queue of function {function} is full:"
            f" {bound} dead invocations",
            hint="nothing more is queued until some are redriven or purged (dlq:manage:"
            " donjon dlq ls, redrive, purge)",
        )


class NodeQueueFull(QueueFull):
    """The node holds its ceiling (DONJON_QUEUE_MAX_PENDING) of pending invocations,
    every function's together (node_bound.py): nothing was queued."""

    limit = "node_queued"
    reason = "node queue full"

    def __init__(self, function: str, ceiling: int, wanted: int = 1) -> None:
        super().__init__(
            function,
            ceiling,
            wanted,
            message=f"this node's queue is full: {ceiling} invocations pending, every"
            " function's together (DONJON_QUEUE_MAX_PENDING)",
            hint="try again later; the node's operator may raise DONJON_QUEUE_MAX_PENDING",
        )


class BatchOverBound(QueueError):
    """Invocations asked to be queued together (the records of one message) that are more
    than the function's whole bound (`limits.queued`): they can never be queued together,
    however the queue drains, so the sender is not told to try again. Nothing is queued."""

    title = "Batch over the queue's bound"

    def __init__(self, function: str, bound: int, wanted: int) -> None:
        super().__init__(
            f"{wanted} invocations of function {function} asked at once are more than its"
            f" limits.queued ({bound}): they can never be queued together",
            hint="send fewer records per message, or the function's owner may raise limits.queued",
        )
        self.function = function
        self.bound = bound
        self.wanted = wanted


class Status(StrEnum):
    """Where an async invocation is.

    `failed`: an attempt failed and another is due; `dead`: no attempt is left (its
    attempts used up, its maximum age passed, or an event no retry can fix): it is in
    the dead-letter queue until it is redriven or purged."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"


#: The states an invocation counts against its function's `limits.queued` in: not
#: finished and not dead-lettered (queued, running, waiting for a retry).
PENDING = frozenset({Status.QUEUED, Status.RUNNING, Status.FAILED})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The function's `retry` as it was when the event was enqueued (or redriven)."""

    attempts: int = 3
    backoff_s: float = 2.0
    max_age_s: int = 3600


@dataclass(frozen=True, slots=True)
class QueuedInvocation:
    """One async invocation as stored."""

    id: str
    function: str
    trigger: str
    source: str
    type: str
    #: The principal label of the caller (`key:<id>`, `jwt:<issuer>:<sub>`); None for
    #: events from a source (webhook, storage, database).
    principal: str | None
    delivery_id: str | None
    subject: str | None
    event: bytes
    status: Status
    #: Attempts started so far (a claim counts one; a throttled one is given back).
    attempts: int
    retry: RetryPolicy
    enqueued_at: float
    #: When it may next be claimed (queued or failed).
    next_at: float
    updated_at: float
    #: The last attempt's call (its `donjon logs` entry and audit records).
    request_id: str | None = None
    #: Its request passed admission as it was queued (an async invoke): that stands for
    #: the first attempt's rate buckets and quotas (a redrive clears it).
    admitted: bool = False
    #: The function's result (JSON bytes) once it succeeded.
    result: bytes | None = None
    #: The function's version it was queued for, or redriven under (None: queued before
    #: versions were kept): its delivery goes to that owner's function or nowhere.
    version: int | None = None
    #: Why the last attempt failed: an error type and a message (never the event).
    error_type: str | None = None
    error: str | None = None
    #: A token caller's roles as its token granted them (Envelope.roles).
    roles: tuple[str, ...] = ()
    #: The kid of the key that signed a token caller's token (Envelope.signed_by).
    signed_by: str | None = None
    #: The fingerprint of that key (Envelope.signed_key).
    signed_key: str | None = None

    def envelope(self) -> Envelope:
        """The envelope it was enqueued from."""
        return Envelope(
            function=self.function,
            event=self.event,
            trigger=self.trigger,
            source=self.source,
            type=self.type,
            principal=self.principal,
            roles=self.roles,
            signed_by=self.signed_by,
            signed_key=self.signed_key,
            delivery_id=self.delivery_id,
            subject=self.subject,
        )


@dataclass(frozen=True, slots=True)
class Lease:
    """An invocation claimed by a worker: only the holder of `token` records its outcome."""

    invocation: QueuedInvocation
    token: str
    expires_at: float


class InvocationQueue(abc.ABC):
    """The queue's role. Every method commits before it returns."""

    @abc.abstractmethod
    async def enqueue(
        self,
        envelope: Envelope,
        retry: RetryPolicy,
        *,
        admitted: bool = False,
        bound: int | None = None,
        version: int | None = None,
        invocation_id: str | None = None,
    ) -> QueuedInvocation:
        """Store one invocation, due now, for the function's `version`; durable once this
        returns. With `bound`, `QueueFull` (nothing stored) if its function already has
        `bound` pending. `invocation_id`: its id, chosen by the caller (noted before the
        commit: triggers/queue/noted.py); else a new one."""

    @abc.abstractmethod
    async def enqueue_all(
        self,
        envelopes: Sequence[Envelope],
        retry: RetryPolicy,
        *,
        bound: int | None = None,
        version: int | None = None,
        invocation_ids: Sequence[str] | None = None,
    ) -> list[QueuedInvocation]:
        """Store invocations of one function (each `admitted` as its envelope says) for its
        `version`, all or none: `QueueFull` if its pending ones and these would pass
        `bound`, `BatchOverBound` if these alone would. `invocation_ids`: theirs, one an
        envelope, chosen by the caller; else new ones."""

    @abc.abstractmethod
    async def pending(self, function: str | None = None) -> dict[str, int]:
        """How many invocations each function (or only `function`) has pending; functions
        with none are left out."""

    @abc.abstractmethod
    async def claim(
        self, limit: int, lease_s: float, running: Mapping[str, int] | None = None
    ) -> list[Lease]:
        """Lease up to `limit` due invocations (queued, failed and due, or running with an
        expired lease), counting an attempt on each: first those of the functions with the
        fewest calls in `running` (function -> calls running on this node), then the oldest."""

    @abc.abstractmethod
    async def renew(self, lease: Lease, lease_s: float) -> bool:
        """Move the lease's expiry on; False if it was lost (expired and claimed again)."""

    @abc.abstractmethod
    async def succeed(self, lease: Lease, result: bytes, request_id: str) -> bool:
        """Record success; False if the lease was lost (the outcome is not written)."""

    @abc.abstractmethod
    async def fail(
        self,
        lease: Lease,
        error_type: str,
        error: str,
        request_id: str | None,
        retry_at: float | None,
        *,
        charge: bool = True,
    ) -> bool:
        """Record a failed attempt: `failed` and due at `retry_at`, or `dead` when None.
        `charge=False` gives the attempt back (it never ran: throttled, node stopping)."""

    @abc.abstractmethod
    async def get(self, invocation_id: str) -> QueuedInvocation | None:
        """The invocation with that id, whatever its state."""

    @abc.abstractmethod
    async def dead(
        self, function: str | Collection[str] | None, limit: int
    ) -> list[QueuedInvocation]:
        """Dead-lettered invocations (of one function, of some, or all), oldest first."""

    @abc.abstractmethod
    async def dead_functions(self) -> list[str]:
        """The names of the functions with dead-lettered invocations."""

    @abc.abstractmethod
    async def redrive(
        self,
        invocation_id: str,
        retry: RetryPolicy | None,
        *,
        bound: int | None = None,
        version: int | None = None,
    ) -> QueuedInvocation:
        """Queue a dead invocation again, its attempts and age starting afresh (under `retry`,
        the function's current policy, and for its `version`, if given). Raises
        InvocationNotFound, and QueueFull (left dead) when its function already has `bound`
        pending."""

    @abc.abstractmethod
    async def dead_ids(self, function: str) -> list[str]:
        """The ids of a function's dead-lettered invocations."""

    @abc.abstractmethod
    async def purge(self, function: str | None) -> int:
        """Delete dead-lettered invocations (of one function, or all); how many."""

    @abc.abstractmethod
    async def prune(self, before: float) -> int:
        """Delete succeeded invocations last updated before `before`; how many."""

    @abc.abstractmethod
    async def trim_succeeded(self, function: str, keep: int, batch: int) -> int:
        """Delete up to `batch` of `function`'s oldest succeeded invocations past its
        newest `keep`; how many."""
