"""RFC 9457 problem documents: the only shape errors take over HTTP."""

from __future__ import annotations

import http
import json
import logging
import math

from starlette.responses import Response

from donjon.audit.errors import AuditStorageFull, AuditUnavailable, RecordPending
from donjon.audit.inflight import InFlightFull
from donjon.audit.proofs import LogTampered, ProofError
from donjon.audit.prover import CheckpointNotFound
from donjon.audit.unused import BadWindow
from donjon.boundedjson import JSONTooDeep
from donjon.bundle import BundleError
from donjon.errors import Error
from donjon.gateway.errors import (
    BadFunctionResponse,
    BadRequest,
    Forbidden,
    GatewayError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    NotImplementedYet,
    PayloadTooLarge,
    Unauthorized,
)
from donjon.gateway.large_events import LargeEventsBusy
from donjon.gateway.proof_work import AuditReadsBusy, ProofsBusy
from donjon.gateway.slots import ConcurrencyFull
from donjon.gateway.stored_views import StoredViewsBusy
from donjon.identity import IdentityError, IssuerError, JwksError, RoleError
from donjon.identity.policy_doc import RoleConflict
from donjon.lifecycle import (
    DeployBlocked,
    DeployBusy,
    DeployForbidden,
    FunctionNotFound,
    LifecycleError,
    SkipScanRefused,
)
from donjon.lifecycle.errors import AllowPublicRefused, OwnedFunctionsLimit
from donjon.manifest import ManifestError
from donjon.monitor.manual import BadSubject, NotThrottled
from donjon.monitor.quarantine import FunctionQuarantined, NotQuarantined
from donjon.monitor.responses import ResponseConfigError
from donjon.obs import mint_request_id
from donjon.ratelimit import LimiterUnavailable, RateLimitError
from donjon.sandbox import (
    CallShed,
    FunctionBlocked,
    FunctionCrashed,
    FunctionFailed,
    FunctionMemoryExceeded,
    FunctionResultTooLarge,
    FunctionTimeout,
    SandboxError,
    SandboxUnavailable,
    TooManyInvocations,
)
from donjon.scan import ScanError, ScanLimitExceeded
from donjon.store import StorageFull, StoreConflict, storage_full
from donjon.supply.errors import SupplyTampered
from donjon.triggers.queue import (
    BatchOverBound,
    InvocationNotFound,
    QueueError,
    QueueFull,
    UnknownFunction,
)
from donjon.triggers.webhooks import BadDelivery, WebhookError, WebhookMisconfigured
from donjon.vault import SecretNotFound
from donjon.vault.errors import GraceEndForbidden, GrantedTooLarge
from donjon.vault.names import BadSecret

__all__ = [
    "BEARER_CHALLENGE",
    "STATUS",
    "problem",
    "problem_from_error",
    "quarantined",
    "retry_after_of",
    "status_for",
    "storage_full_problem",
    "title_for",
]

log = logging.getLogger("donjon")

#: The one place where error types meet HTTP: the status each answers with. An
#: error type not listed answers with its nearest listed base class's status;
#: one with none listed (a store that cannot be opened, a broken vault, a
#: defect) is a 500 that names no internals.
STATUS: dict[type[Error], int] = {
    GatewayError: 400,
    BadRequest: 400,
    InvalidInput: 422,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    MethodNotAllowed: 405,
    NotImplementedYet: 501,
    PayloadTooLarge: 413,
    BadFunctionResponse: 502,
    JSONTooDeep: 400,
    IdentityError: 401,
    IssuerError: 400,
    JwksError: 400,
    ManifestError: 422,
    BundleError: 422,
    ScanError: 400,
    ScanLimitExceeded: 422,
    LifecycleError: 400,
    DeployBlocked: 422,
    SkipScanRefused: 403,
    AllowPublicRefused: 403,
    DeployForbidden: 403,
    OwnedFunctionsLimit: 403,
    RoleError: 400,
    RoleConflict: 409,
    FunctionNotFound: 404,
    DeployBusy: 503,
    # Audit proofs being built fill their threads and queue (gateway/proof_work.py).
    ProofsBusy: 503,
    AuditReadsBusy: 503,
    StoredViewsBusy: 503,  # large invocation views (gateway/stored_views.py)
    LargeEventsBusy: 503,  # large events' checks (gateway/large_events.py)
    RateLimitError: 429,
    # The shared limits store (Redis) is down: a quota cannot be checked, so the call
    # is refused (fail closed), with Retry-After (ratelimit/failover.py).
    LimiterUnavailable: 503,
    StoreConflict: 409,
    # The data dir's filesystem (or the database's disk) is full: nothing was written,
    # and the same request succeeds once space is freed (Retry-After).
    StorageFull: 503,
    AuditStorageFull: 503,
    # No audit writer runs (restarting after a death, or given up): nothing recorded.
    AuditUnavailable: 503,
    # A change made whose record waits in the outbox: said, and not to be sent again.
    RecordPending: 500,
    WebhookError: 401,
    BadDelivery: 401,
    # The webhook's secret is unusable for its scheme: the sender retries once fixed.
    WebhookMisconfigured: 503,
    SandboxError: 500,
    SandboxUnavailable: 503,
    FunctionFailed: 500,
    FunctionBlocked: 403,
    FunctionTimeout: 504,
    FunctionMemoryExceeded: 507,
    FunctionCrashed: 502,
    FunctionResultTooLarge: 502,
    TooManyInvocations: 429,
    CallShed: 503,
    ConcurrencyFull: 503,
    InFlightFull: 503,
    BadSecret: 422,
    SecretNotFound: 404,
    # The function as deployed cannot be called: its grants carry more than a call may.
    GrantedTooLarge: 422,
    GraceEndForbidden: 403,
    BadWindow: 400,
    FunctionQuarantined: 503,
    NotQuarantined: 404,
    BadSubject: 400,
    NotThrottled: 404,
    ResponseConfigError: 400,
    ProofError: 400,
    CheckpointNotFound: 404,
    LogTampered: 409,
    # A stored SBOM or provenance row that its signed statement does not vouch for.
    SupplyTampered: 409,
    # The async queue (triggers/queue/): its database failing is a 503 (nothing changed).
    QueueError: 503,
    # A function's queue holds its `limits.queued`: a condition of the function, shared by
    # every sender, not of one caller's pace (429); 503 with Retry-After is what webhook
    # senders and stores retry (docs/limits.md, "Pending async invocations").
    QueueFull: 503,
    # More records in one message than the function's whole bound: never queued, however
    # long the sender waits (not a 503: no Retry-After to follow).
    BatchOverBound: 413,
    InvocationNotFound: 404,
    UnknownFunction: 404,
}


def _listed_status(error: Error) -> int | None:
    for cls in type(error).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return None


def status_for(error: Error) -> int:
    """The HTTP status `error` answers with (STATUS, by the most specific type listed)."""
    return _listed_status(error) or 500


#: RFC 9110's reason phrases (RFC 6585 for 429 and 431, RFC 4918 for 507): with
#: type about:blank, a problem's title is its status's phrase (RFC 9457, 4.2.1).
_PHRASES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    507: "Insufficient Storage",
}

#: The challenge a 401 carries (RFC 9110, 11.6.1): API keys and JWTs are bearer tokens.
BEARER_CHALLENGE = 'Bearer realm="donjon"'


def title_for(status: int) -> str:
    """The title of an about:blank problem with `status`: the status's reason phrase."""
    phrase = _PHRASES.get(status)
    if phrase is None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
    return phrase


def problem(
    status: int,
    detail: str,
    *,
    request_id: str = "",
    title: str = "",
    extra: dict[str, object] | None = None,
    challenge: str = BEARER_CHALLENGE,
) -> Response:
    """An RFC 9457 problem document with `status`.

    Its type is about:blank, so its title is the status's phrase (`title` is
    ignored: the error's own kind is in `detail`). Every problem carries a request
    id (a fresh one when the request had none yet), in the body and in
    `X-Request-Id`; a 401 carries `WWW-Authenticate` with `challenge`.
    """
    del title  # kept for callers; about:blank fixes the title (RFC 9457, 4.2.1)
    request_id = request_id or mint_request_id()
    body: dict[str, object] = {
        "type": "about:blank",
        "title": title_for(status),
        "status": status,
        "detail": detail,
        "request_id": request_id,
    }
    if extra:
        body.update(extra)
    headers = {"x-request-id": request_id}
    if status == 401:
        headers["www-authenticate"] = challenge
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def retry_after_of(error: Error) -> float | None:
    """The seconds a refusal asks its caller to wait before trying again (its
    `retry_after_s`: a limit, a full queue, the audit writer, a full disk), else None."""
    wait = getattr(error, "retry_after_s", None)
    return float(wait) if isinstance(wait, int | float) else None


def problem_from_error(
    error: Error, *, request_id: str = "", extra: dict[str, object] | None = None
) -> Response:
    status = _listed_status(error)
    if status is None and storage_full(error):  # a store write that found no room
        log.error("request %s: %s: %s", request_id or "-", type(error).__name__, error.message)
        error, status = StorageFull(), STATUS[StorageFull]
    if status is None:
        # Not an answer to the caller's request (a database, the vault, a defect):
        # its message may name host paths or internals, so it goes to the log only.
        log.error("request %s: %s: %s", request_id or "-", type(error).__name__, error.message)
        return problem(
            500,
            "internal error; the server log has the details"
            + (f" (request {request_id})" if request_id else ""),
            request_id=request_id,
        )
    detail = error.message if not error.hint else f"{error.message} ({error.hint})"
    response = problem(status, detail, request_id=request_id, title=error.title, extra=extra)
    retry_after = retry_after_of(error)  # busy: say when to come back
    if retry_after is not None:
        response.headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    headers = getattr(error, "headers", None)  # a limit's RateLimit fields (rate_buckets.py)
    if isinstance(headers, dict):
        response.headers.update(headers)
    return response


def storage_full_problem(request_id: str) -> Response:
    """The answer to a request that failed on a full disk outside any Error (a store
    write's own exception reaching the app's last handler): a 503, as StorageFull."""
    return problem_from_error(StorageFull(), request_id=request_id)


def quarantined(error: FunctionQuarantined, request_id: str, *, public: bool = False) -> Response:
    """A call to a quarantined function: 503 with `errorType` Function.Quarantined, the
    reason and the alert; to a `public` trigger's caller (anyone at all), neither."""
    if public:
        return problem(
            503,
            f"function {error.record.name} is quarantined",
            request_id=request_id,
            extra={"errorType": error.title},
        )
    return problem_from_error(error, request_id=request_id, extra=error.problem_fields())
