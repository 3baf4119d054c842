"""The bodies of async invocations and the dead-letter queue (gateway/async_invoke.py,
gateway/dlq_api.py): what /openapi.json describes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from donjon import boundedjson
from donjon.gateway.schemas import Epoch
from donjon.triggers.queue import QueuedInvocation, Status

__all__ = [
    "DeadInvocationView",
    "DlqPurged",
    "DlqRedrive",
    "DlqRedriven",
    "InvocationAccepted",
    "InvocationError",
    "InvocationView",
    "dead_view",
    "invocation_view",
]


_ID = "3f1c2a9e-5b7d-4c1e-9a0b-2d4e6f8a1c3e"
_T = 1767225600.0


def _example(**example: Any) -> ConfigDict:
    return ConfigDict(frozen=True, json_schema_extra={"examples": [example]})


_VIEW = {
    "invocation_id": _ID,
    "function": "resize",
    "status": "succeeded",
    "trigger": "invoke",
    "attempts": 1,
    "max_attempts": 3,
    "enqueued_at": _T,
    "updated_at": _T + 0.2,
    "next_attempt_at": None,
    "request_id": "5f2c1e0a9b7d3c41",
    "result": {"resized": 1},
    "error": None,
}
_DEAD = {
    **_VIEW,
    "status": "dead",
    "attempts": 3,
    "result": None,
    "error": {"type": "RuntimeError", "message": "no such image"},
}


class InvocationAccepted(BaseModel):
    """An async invocation, queued (durably) and not yet run."""

    model_config = _example(invocation_id=_ID, status="queued", request_id="5f2c1e0a9b7d3c41")

    invocation_id: str
    status: str = Field(description="queued")
    request_id: str = Field(description="the id of the request that queued it")


class InvocationError(BaseModel):
    """Why its last attempt failed."""

    model_config = _example(type="RuntimeError", message="no such image")

    type: str = Field(description="the error's type, as the logs name it (errorType)")
    message: str | None = Field(
        None, description="its message; only for callers who may read the function's logs"
    )


class InvocationView(BaseModel):
    """An async invocation: where it is, its attempts, and its result or error."""

    model_config = _example(**_VIEW)

    invocation_id: str
    function: str
    status: str = Field(description="queued, running, succeeded, failed (a retry is due) or dead")
    trigger: str = Field(description="invoke, webhook, s3, postgres")
    attempts: int = Field(description="attempts started so far")
    max_attempts: int
    enqueued_at: Epoch
    updated_at: Epoch
    next_attempt_at: Epoch | None = Field(None, description="when a queued or failed one runs")
    request_id: str | None = Field(None, description="its last attempt's call (donjon logs)")
    result: Any = Field(None, description="what the function returned, once it succeeded")
    error: InvocationError | None = None


class DeadInvocationView(InvocationView):
    """A dead-lettered invocation with what it was queued with (admins only)."""

    model_config = _example(
        **_DEAD,
        source="/v1/functions/resize/invoke",
        type="dev.donjon.invoke",
        subject=None,
        delivery_id=None,
        event={"url": "https://example.com/a.png"},
    )

    source: str = Field(description="CloudEvents source: where the event came from")
    type: str = Field(description="CloudEvents type")
    subject: str | None = None
    delivery_id: str | None = Field(None, description="the producer's own id of the delivery")
    event: Any = Field(None, description="the event, as JSON")


class DlqRedrive(BaseModel):
    """Queue again every dead-lettered invocation of one function."""

    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"function": "resize"}]},
    )

    function: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")


class DlqRedriven(BaseModel):
    model_config = _example(redriven=[_ID])

    redriven: list[str] = Field(description="the ids queued again")


class DlqPurged(BaseModel):
    model_config = _example(purged=2)

    purged: int = Field(description="how many dead-lettered invocations were deleted")


def _json(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return boundedjson.loads(raw)
    except (ValueError, boundedjson.JSONTooDeep):
        return None


def invocation_view(inv: QueuedInvocation, *, reveal: bool) -> dict[str, Any]:
    """The fields of an InvocationView; the error's message only with `reveal`."""
    waiting = inv.status in (Status.QUEUED, Status.FAILED)
    return {
        "invocation_id": inv.id,
        "function": inv.function,
        "status": inv.status.value,
        "trigger": inv.trigger,
        "attempts": inv.attempts,
        "max_attempts": inv.retry.attempts,
        "enqueued_at": inv.enqueued_at,
        "updated_at": inv.updated_at,
        "next_attempt_at": inv.next_at if waiting else None,
        "request_id": inv.request_id,
        "result": _json(inv.result) if inv.status is Status.SUCCEEDED else None,
        "error": None
        if inv.error_type is None or inv.status is Status.SUCCEEDED
        else InvocationError(type=inv.error_type, message=inv.error if reveal else None),
    }


def dead_view(inv: QueuedInvocation) -> DeadInvocationView:
    return DeadInvocationView(
        **invocation_view(inv, reveal=True),
        source=inv.source,
        type=inv.type,
        subject=inv.subject,
        delivery_id=inv.delivery_id,
        event=_json(inv.event),
    )
