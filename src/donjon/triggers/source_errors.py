"""The errors of event sources (storage and database events): each says what was wrong
with an event or a source's settings, and never shows a credential."""

from __future__ import annotations

from donjon.errors import Error

__all__ = ["MalformedEvent", "SourceError", "SourceSettingsError"]


class SourceError(Error):
    """An event source could not take an event or reach what it reads from."""

    title = "Event source error"


class MalformedEvent(SourceError):
    """An event document that is not what its producer sends: nothing of it is submitted."""

    title = "Malformed event"


class SourceSettingsError(SourceError):
    """A trigger's secret that does not hold usable settings (the queue's, the DSN)."""

    title = "Bad event source settings"
