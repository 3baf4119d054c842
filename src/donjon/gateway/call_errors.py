"""The problem document a failed call answers with (invoke, http triggers, the Lambda API)."""

from __future__ import annotations

import logging

from starlette.responses import Response

from donjon.errors import Error
from donjon.gateway.function_errors import FUNCTION_FAILURES, error_fields, may_read_logs
from donjon.gateway.node import Node
from donjon.gateway.problems import problem, problem_from_error, quarantined, status_for
from donjon.identity import Principal
from donjon.lifecycle import Deployed
from donjon.monitor.quarantine import FunctionQuarantined
from donjon.sandbox import FunctionFailed, SandboxUnavailable

__all__ = ["error_response", "reveals"]

log = logging.getLogger("donjon")


def error_response(error: Error, request_id: str, *, reveal: bool = False) -> Response:
    """The problem document of `error`; with `reveal` (the caller may read the function's
    logs) a failed call's `errorType` and `errorMessage` too (function_errors.py)."""
    if reveal and isinstance(error, FUNCTION_FAILURES):
        fields: dict[str, object] = dict(error_fields(error))
        return problem(
            status_for(error),
            f"the function failed (request {request_id}): {fields['errorMessage']}",
            request_id=request_id,
            extra=fields,
        )
    if isinstance(error, FunctionQuarantined):
        return quarantined(error, request_id)
    if isinstance(error, FunctionFailed):
        # The caller learns that it failed and the request id, never the trace.
        return problem(
            500,
            f"the function failed; see `donjon logs` for request {request_id}",
            request_id=request_id,
            title=error.title,
        )
    if isinstance(error, SandboxUnavailable):
        # Its message may name host paths or bubblewrap's own words: logs only.
        log.error("request %s: %s", request_id, error.message)
        return problem(
            503,
            f"the function's sandbox could not start (request {request_id})",
            request_id=request_id,
            title=error.title,
        )
    return problem_from_error(error, request_id=request_id)


def reveals(node: Node, caller: tuple[Principal | None, Deployed] | None, error: Error) -> bool:
    """Whether a failed call's caller may be told its error (it may read the logs):
    decided only for a function's own failure, so the hot path never pays for it."""
    return (
        caller is not None
        and isinstance(error, FUNCTION_FAILURES)
        and may_read_logs(node, caller[0], caller[1])
    )
