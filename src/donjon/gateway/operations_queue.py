"""The OpenAPI catalog of async invocations and /v1/dlq (gateway/async_invoke.py,
gateway/dlq_api.py): merged into OPERATIONS."""

from __future__ import annotations

from donjon.gateway.operation_model import AUTH, BODY, ListOf, Operation, Param
from donjon.gateway.queue_views import (
    DeadInvocationView,
    DlqPurged,
    DlqRedrive,
    DlqRedriven,
    InvocationView,
)

__all__ = ["QUEUE_OPERATIONS"]

_FUNCTION = Param(
    "function", "query", {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,62}$"}, "one function's"
)

QUEUE_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/v1/invocations/{invocation_id}"): Operation(
        "getInvocation",
        "An async invocation: status, attempts, result or error",
        "invoke",
        {200: InvocationView},
        (401, 404),
        description="Seen by the caller that made it and by admins (dlq:manage); to anyone "
        "else it does not exist. The error's message only to callers who may read the "
        "function's logs.",
    ),
    ("GET", "/v1/dlq"): Operation(
        "listDeadLetters",
        "Dead-lettered async invocations, oldest first",
        "dlq",
        {200: ListOf(InvocationView)},
        (400, *AUTH),
        params=(_FUNCTION,),
    ),
    ("DELETE", "/v1/dlq"): Operation(
        "purgeDeadLetters",
        "Delete dead-lettered invocations (audited invocation.purge)",
        "dlq",
        {200: DlqPurged},
        (400, *AUTH),
        params=(_FUNCTION,),
    ),
    ("POST", "/v1/dlq/redrive"): Operation(
        "redriveFunctionDeadLetters",
        "Queue again every dead-lettered invocation of a function (audited invocation.redrive)",
        "dlq",
        {200: DlqRedriven},
        (*BODY, 503),
        DlqRedrive,
        description="Stops at the function's `limits.queued`: 503 saying how many were"
        " redriven; the rest stay dead.",
    ),
    ("GET", "/v1/dlq/{invocation_id}"): Operation(
        "getDeadLetter",
        "One dead-lettered invocation, with its event",
        "dlq",
        {200: DeadInvocationView},
        (*AUTH, 404),
    ),
    ("POST", "/v1/dlq/{invocation_id}/redrive"): Operation(
        "redriveDeadLetter",
        "Queue a dead-lettered invocation again (audited invocation.redrive)",
        "dlq",
        {200: InvocationView},
        (*AUTH, 404, 503),
        description="Its attempts and age start afresh, under its function's current `retry`."
        " 503 (it stays dead) when its function's queue holds its `limits.queued`.",
    ),
}
