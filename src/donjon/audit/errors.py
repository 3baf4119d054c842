"""The audit subsystem's base error (own module: the log, the tree and the migration raise it)."""

from __future__ import annotations

from donjon.errors import Error

__all__ = ["AuditError", "AuditStorageFull", "AuditUnavailable", "RecordPending"]


class AuditError(Error):
    """The audit log could not be written or read."""

    title = "Audit error"


class AuditStorageFull(AuditError):
    """The audit log's storage had no room for a record: the request it records failed."""

    title = "Audit storage full"
    #: Seconds a client waits before it sends again (a 503's Retry-After).
    retry_after_s = 5


class AuditUnavailable(AuditError):
    """No audit writer runs to record a call (it died and a new one is starting, its
    restarts stopped, or the node is stopping), so the call is refused at its admission,
    before anything is spent, queued or run (gateway/admission.py). A 503 with
    Retry-After: a new writer takes over within about a second, and a node whose
    writer's restarts stopped fails its liveness probe (gateway/readiness.py)."""

    title = "Audit log unavailable"
    retry_after_s = 1


class RecordPending(AuditError):
    """A change was made and its record could not be appended yet: it waits in the audit
    outbox (audit/changes.py). Answered 500 without Retry-After, never as a refusal to try
    again: the change is kept, and a client repeating it would make it twice."""

    title = "Change made, audit record pending"
