"""HTTP-level errors of the gateway; each becomes a problem document."""

from __future__ import annotations

from donjon.errors import Error

__all__ = ["BadFunctionResponse", "BadRequest", "Forbidden", "GatewayError", "InvalidInput",
           "NotFound", "PayloadTooLarge", "Unauthorized"]


class GatewayError(Error):
    status = 400
    title = "Bad request"


class BadRequest(GatewayError):
    status = 400
    title = "Bad request"


class InvalidInput(GatewayError):
    """Well-formed JSON that the function's input_schema refuses."""

    status = 422
    title = "Unprocessable content"


class Unauthorized(GatewayError):
    status = 401
    title = "Unauthorized"


class Forbidden(GatewayError):
    status = 403
    title = "Forbidden"


class NotFound(GatewayError):
    status = 404
    title = "Not found"


class PayloadTooLarge(GatewayError):
    status = 413
    title = "Payload too large"


class BadFunctionResponse(GatewayError):
    """A function's http response the gateway will not or cannot send (see response_policy)."""

    status = 502
    title = "Bad gateway"
