"""The durable queue of async invocations: retries, leases, the dead-letter queue."""

from __future__ import annotations

from donjon.triggers.queue.interface import (
    BatchOverBound,
    DeadLettersFull,
    InvocationNotFound,
    InvocationQueue,
    Lease,
    NodeQueueFull,
    QueuedInvocation,
    QueueError,
    QueueFull,
    RetryPolicy,
    Status,
)
from donjon.triggers.queue.retry import Outcome
from donjon.triggers.queue.service import (
    AsyncInvocations,
    AuditSink,
    FunctionPolicy,
    Lookup,
    Refused,
    UnknownFunction,
)
from donjon.triggers.queue.sql import SqlInvocationQueue
from donjon.triggers.queue.workers import Deliver, QueueWorkers

__all__ = [
    "AsyncInvocations",
    "AuditSink",
    "BatchOverBound",
    "DeadLettersFull",
    "Deliver",
    "FunctionPolicy",
    "InvocationNotFound",
    "InvocationQueue",
    "Lease",
    "Lookup",
    "NodeQueueFull",
    "Outcome",
    "QueueError",
    "QueueFull",
    "QueueWorkers",
    "QueuedInvocation",
    "Refused",
    "RetryPolicy",
    "SqlInvocationQueue",
    "Status",
    "UnknownFunction",
]
