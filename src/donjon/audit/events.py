"""What the audit log records and what each commit hands its listeners."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AuditEvent", "CommittedBatch", "CommittedRecord", "InvocationLog", "Listener"]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Metadata of one security-relevant event. Never payloads, never secrets."""

    actor: str
    action: str
    target: str
    outcome: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InvocationLog:
    """A function's captured output for one call, written with its audit record."""

    function: str
    version: int
    request_id: str
    outcome: str
    output: str
    #: The call's wall time at the gateway, and the peak memory its worker reported.
    duration_ms: float | None = None
    memory_kb: int | None = None


@dataclass(frozen=True, slots=True)
class CommittedRecord:
    """One record as committed: its place in the log, its time and its event."""

    seq: int
    ts: float
    event: AuditEvent


@dataclass(frozen=True, slots=True)
class CommittedBatch:
    """What one commit appended, handed to the listeners after the commit."""

    records: tuple[CommittedRecord, ...]
    #: Seconds spent writing and committing the batch's transaction (in the writer
    #: process a transaction may hold several batches; each reports its time).
    write_seconds: float


#: Called after each commit, before the batch's callers resume: in the writer thread,
#: or on the loop's thread when the writer is a process. Must be quick and thread-safe
#: (hand the batch to an event loop with `call_soon_threadsafe`, or `call_soon` when on
#: that running loop's own thread; or bump counters).
Listener = Callable[[CommittedBatch], None]
