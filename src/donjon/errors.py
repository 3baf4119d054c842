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

    def summary(self) -> str:
        """The message without anything of the input it refuses: what the node logs or
        audits of a refusal of someone else's input (an event from a queue or a database).
        The message itself, unless the error's message may quote that input."""
        return self.message

    def diagnostics(self) -> str:
        """The message and, when there is one, how to fix it."""
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message
