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

    def fields(self) -> dict[str, object]:
        """Members its problem document carries beside the detail (none by default)."""
        return {}


class BadRequest(GatewayError):
    title = "Bad request"


class InvalidInput(GatewayError):
    """Well-formed JSON that the function's input_schema refuses."""

    title = "Unprocessable content"
    #: The failing field as a JSON pointer (RFC 6901; "" is the whole event).
    pointer: str | None = None

    def fields(self) -> dict[str, object]:
        return {"pointer": self.pointer} if self.pointer is not None else {}


class Unauthorized(GatewayError):
    title = "Unauthorized"


class Forbidden(GatewayError):
    title = "Forbidden"


class NotFound(GatewayError):
    title = "Not found"


class PayloadTooLarge(GatewayError):
    title = "Payload too large"
    #: The limit the body broke, in bytes, when it is a function's (`limits.body`).
    limit_bytes: int | None = None

    def fields(self) -> dict[str, object]:
        return {"limit_bytes": self.limit_bytes} if self.limit_bytes is not None else {}


class BadFunctionResponse(GatewayError):
    """A function's http response the gateway will not or cannot send (see response_policy)."""

    title = "Bad gateway"


class NotImplementedYet(GatewayError):
    """A valid request for something this version does not do (yet)."""

    title = "Not implemented"
