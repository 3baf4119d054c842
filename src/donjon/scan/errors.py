"""The scan subsystem's base error, in a leaf module every other module may import."""

from __future__ import annotations

from donjon.errors import Error

__all__ = ["ScanError"]


class ScanError(Error):
    """A scan could not run as asked: bad path, policy, advisory database or baseline."""

    title = "Scan error"
