"""The root of every error Donjon raises on purpose.

Each error carries a message (what went wrong) and a hint (how to fix it),
and nothing of HTTP: the CLI prints both on one line each and exits non-zero;
the gateway maps error types to statuses and RFC 9457 problem documents in
one table (donjon.gateway.problems).
"""

from __future__ import annotations

__all__ = ["Error"]


class Error(Exception):
    """A failure Donjon understands and can explain to its user."""

    #: A short, stable name for the kind of failure (the problem document's title).
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
