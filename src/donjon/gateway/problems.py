"""RFC 9457 problem documents: the only shape errors take over HTTP."""

from __future__ import annotations

import json
import math

from starlette.responses import Response

from donjon.errors import Error

__all__ = ["problem", "problem_from_error"]

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


def problem(status: int, detail: str, *, request_id: str = "", title: str = "",
            extra: dict[str, object] | None = None) -> Response:
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
        json.dumps(body), status_code=status, media_type="application/problem+json",
        headers=headers,
    )


def problem_from_error(error: Error, *, request_id: str = "",
                       extra: dict[str, object] | None = None) -> Response:
    detail = error.message if not error.hint else f"{error.message} ({error.hint})"
    response = problem(error.status, detail, request_id=request_id, title=error.title,
                       extra=extra)
    retry_after = getattr(error, "retry_after_s", None)  # busy: say when to come back
    if isinstance(retry_after, int | float):
        response.headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    return response
