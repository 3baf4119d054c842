"""Errors of the observability subsystem (logs and metrics)."""

from __future__ import annotations

from donjon.errors import Error

__all__ = ["ObservabilityError"]


class ObservabilityError(Error):
    """Logging or metrics could not be set up as asked."""

    title = "Observability error"
