"""HTTP-level errors of the gateway; each becomes a problem document."""

from __future__ import annotations

from donjon.errors import Error

__all__ = [
    "BadFunctionResponse",
    "BadRequest",
    "Forbidden",
    "GatewayError",
    "InvalidInput",
    "NotFound",
    "NotImplementedYet",
    "PayloadTooLarge",
    "Unauthorized",
]


class GatewayError(Error):
    title = "Bad request"


class BadRequest(GatewayError):
    title = "Bad request"


class InvalidInput(GatewayError):
    """Well-formed JSON that the function's input_schema refuses."""

    title = "Unprocessable content"


class Unauthorized(GatewayError):
    title = "Unauthorized"


class Forbidden(GatewayError):
    title = "Forbidden"


class NotFound(GatewayError):
    title = "Not found"


class PayloadTooLarge(GatewayError):
    title = "Payload too large"


class BadFunctionResponse(GatewayError):
    """A function's http response the gateway will not or cannot send (see response_policy)."""

    title = "Bad gateway"


class NotImplementedYet(GatewayError):
    """A valid request for something this version does not do (yet)."""

    title = "Not implemented"
