"""The scanner role.

A scan runs several `Scanner` implementations over one `Project` (the files of the
target, read once): `CodeScanner` (Donjon's own taint analysis), `BanditScanner`
(Bandit's checks that complement it), `SecretScanner`, `DependencyScanner` and
`ManifestScanner`. Each returns findings and notes; `donjon.scan.engine` merges them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from donjon.scan.model import Finding
    from donjon.scan.project import Project

__all__ = ["Scanner", "ScannerOutput"]


@dataclass(frozen=True)
class ScannerOutput:
    """What one scanner found, and what it could not look at (notes for the report)."""

    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()
    #: Secret values found: the engine masks them in every finding's text (a code
    #: finding's snippet may hold the line a secret is written on).
    secrets: frozenset[str] = frozenset()


class Scanner(ABC):
    """One family of checks over a project."""

    #: Short name shown in notes and timings.
    name: ClassVar[str]

    @abstractmethod
    def scan(self, project: Project) -> ScannerOutput:
        """Check `project` and return findings; raise `ScanError` only if the scan can't run."""
