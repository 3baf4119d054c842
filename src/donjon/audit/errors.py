"""The audit subsystem's base error (own module: the log, the tree and the migration raise it)."""

from __future__ import annotations

from donjon.errors import Error

__all__ = ["AuditError"]


class AuditError(Error):
    """The audit log could not be written or read."""

    title = "Audit error"
