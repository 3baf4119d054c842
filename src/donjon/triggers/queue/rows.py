"""What the queue's SQL writes and reads of a row, beside the statements (sql.py): text
the database takes, a queued envelope's columns, and a row read back as an invocation
(its event and result opened by the queue's sealer, in sql.py)."""

from __future__ import annotations

from typing import Any

from donjon.triggers.envelope import Envelope
from donjon.triggers.queue.interface import QueuedInvocation, RetryPolicy, Status

__all__ = ["RowValues", "db_text", "invocation_of", "queued_columns"]


def db_text(value: str) -> str:
    """`value` as text the database takes: a lone surrogate (a function's error message
    may hold one) is kept as its escape, or the outcome could not be recorded and the
    invocation would run again once its lease expired."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


class RowValues:
    """A dict of column values read as a row (for `_row` of what was just inserted)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(
            {
                "request_id": None,
                "result": None,
                "result_key": None,
                "event_key": None,
                "kek_id": None,
                "admitted": None,
                "error_type": None,
                "error": None,
            },
            **values,
        )


def queued_columns(
    envelope: Envelope, retry: RetryPolicy, admitted: bool, now: float, version: int | None
) -> dict[str, Any]:
    """A newly queued `envelope`'s columns, but its id and its (sealed) event."""
    return {
        "function": envelope.function,
        "trigger": envelope.trigger,
        "source": envelope.source,
        "type": envelope.type,
        "principal": envelope.principal,
        "roles": " ".join(envelope.roles) or None,
        "signed_by": envelope.signed_by,
        "signed_key": envelope.signed_key,
        "delivery_id": envelope.delivery_id,
        "subject": envelope.subject,
        "status": Status.QUEUED.value,
        "attempts": 0,
        "max_attempts": retry.attempts,
        "backoff_s": retry.backoff_s,
        "max_age_s": retry.max_age_s,
        "admitted": 1 if admitted else None,
        "version": version,
        "enqueued_at": now,
        "next_at": now,
        "updated_at": now,
    }


def invocation_of(
    r: Any, event: bytes | None, result: bytes | None, error_type: str | None, error: str | None
) -> QueuedInvocation:
    """Row `r` as an invocation, its event and result as opened, its error as given."""
    return QueuedInvocation(
        id=r.id,
        function=r.function,
        trigger=r.trigger,
        source=r.source,
        type=r.type,
        principal=r.principal,
        roles=tuple((r.roles or "").split()),
        signed_by=r.signed_by,
        signed_key=r.signed_key,
        delivery_id=r.delivery_id,
        subject=r.subject,
        event=event or b"",
        status=Status(r.status),
        attempts=int(r.attempts),
        retry=RetryPolicy(int(r.max_attempts), float(r.backoff_s), int(r.max_age_s)),
        enqueued_at=float(r.enqueued_at),
        next_at=float(r.next_at),
        updated_at=float(r.updated_at),
        request_id=r.request_id,
        result=result,
        version=None if r.version is None else int(r.version),
        error_type=error_type,
        error=error,
        admitted=bool(r.admitted),
    )
