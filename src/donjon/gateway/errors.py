"""HTTP-level errors of the gateway; each becomes a problem document."""

from __future__ import annotations

from donjon.errors import Error

__all__ = [
    "BadFunctionResponse",
    "BadRequest",
    "Forbidden",
    "GatewayError",
    "InvalidInput",
    "MethodNotAllowed",
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
    """Well-formed JSON that the function's input_schema refuses.

    Its message quotes the refused value (the schema validator's words): it is for the
    caller who sent the event. `summary` names only the failing field (`field`, a JSON
    pointer of bounded length; None when the event is not JSON the schema can check) and
    the schema keyword that failed (`rule`)."""

    title = "Unprocessable content"

    def __init__(
        self, message: str, *, hint: str = "", field: str | None = None, rule: str = ""
    ) -> None:
        super().__init__(message, hint=hint)
        self.field = field
        self.rule = rule

    def summary(self) -> str:
        if self.field is None:
            return "the event is not JSON the function's schema can check"
        rule = f" ({self.rule})" if self.rule else ""
        return f"input does not match the function's schema at {self.field}{rule}"


class Unauthorized(GatewayError):
    title = "Unauthorized"


class Forbidden(GatewayError):
    title = "Forbidden"


class NotFound(GatewayError):
    title = "Not found"


class MethodNotAllowed(GatewayError):
    """A method the resource does not take; `headers` holds its Allow (RFC 9110, 15.5.6)."""

    title = "Method Not Allowed"

    def __init__(self, message: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.headers = {"allow": ", ".join(allowed)}


class PayloadTooLarge(GatewayError):
    title = "Payload too large"


class BadFunctionResponse(GatewayError):
    """A function's http response the gateway will not or cannot send (see response_policy)."""

    title = "Bad gateway"


class NotImplementedYet(GatewayError):
    """A valid request for something this version does not do (yet)."""

    title = "Not implemented"
