"""The report-format role and its error.

Each format is one module (`text`, `json`, `sarif`) with a `Renderer` that turns a
`ScanReport` into a string; `renderer_for` finds one by name for the CLI.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from donjon.scan.errors import ScanError
from donjon.scan.model import ScanReport

__all__ = ["FormatError", "Renderer"]


class FormatError(ScanError):
    """No such report format."""


class Renderer(ABC):
    """Turns a report into text of one format."""

    #: The name the CLI's ``--format`` takes.
    name: ClassVar[str]

    @abstractmethod
    def render(self, report: ScanReport) -> str:
        """The whole report in this format."""
