"""The root of every error Donjon raises on purpose.

Each error carries a message (what went wrong) and a hint (how to fix it).
The CLI prints both on one line each and exits non-zero; the gateway turns
them into RFC 9457 problem documents.
"""

from __future__ import annotations

__all__ = ["Error"]


class Error(Exception):
    """A failure Donjon understands and can explain to its user."""

    #: HTTP status the gateway answers with when this error reaches it.
    status: int = 500
    #: Short, stable problem title (RFC 9457 ``title``).
    title: str = "Internal error"

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The message and, when there is one, how to fix it."""
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message
