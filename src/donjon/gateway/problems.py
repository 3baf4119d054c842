"""RFC 9457 problem documents: the only shape errors take over HTTP."""

from __future__ import annotations

import json
import logging
import math

from starlette.responses import Response

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
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
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
from donjon.manifest import ManifestError
from donjon.ratelimit import RateLimitError
from donjon.sandbox import (
    FunctionCrashed,
    FunctionFailed,
    FunctionMemoryExceeded,
    FunctionTimeout,
    SandboxError,
    SandboxUnavailable,
    TooManyInvocations,
)
from donjon.scan import ScanError, ScanLimitExceeded
from donjon.store import StoreConflict
from donjon.vault import SecretNotFound
from donjon.vault.names import BadSecret

__all__ = ["STATUS", "problem", "problem_from_error", "status_for"]

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
    DeployForbidden: 403,
    RoleError: 400,
    RoleConflict: 409,
    FunctionNotFound: 404,
    DeployBusy: 503,
    RateLimitError: 429,
    StoreConflict: 409,
    SandboxError: 500,
    SandboxUnavailable: 503,
    FunctionFailed: 500,
    FunctionTimeout: 504,
    FunctionMemoryExceeded: 507,
    FunctionCrashed: 502,
    TooManyInvocations: 429,
    BadSecret: 422,
    SecretNotFound: 404,
    BadWindow: 400,
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


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
    507: "Insufficient storage",
}


def problem(
    status: int,
    detail: str,
    *,
    request_id: str = "",
    title: str = "",
    extra: dict[str, object] | None = None,
) -> Response:
    body: dict[str, object] = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if request_id:
        body["request_id"] = request_id
    if extra:
        body.update(extra)
    headers = {"x-request-id": request_id} if request_id else None
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def problem_from_error(
    error: Error, *, request_id: str = "", extra: dict[str, object] | None = None
) -> Response:
    status = _listed_status(error)
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
    retry_after = getattr(error, "retry_after_s", None)  # busy: say when to come back
    if isinstance(retry_after, int | float):
        response.headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    return response
