"""`IacScanner`: templates of serverless apps (SAM, CloudFormation, Serverless
Framework, Terraform) read into one model and checked by the DJ-IAC rules.

Each format finds its own files in the project (`TemplateFormat.load`); a template
that does not parse is a note, not a failure of the scan. Every check runs over every
app; a check that raises is a bug, and fails the scan loudly rather than passing a
template it did not look at.
"""

from __future__ import annotations

from collections.abc import Sequence

from donjon.scan.iac.catalog import CHECKS, NOTES, formats
from donjon.scan.iac.interface import Check, TemplateFormat
from donjon.scan.iac.model import App
from donjon.scan.interface import Scanner, ScannerOutput
from donjon.scan.model import Finding
from donjon.scan.project import Project

__all__ = ["IacScanner"]


class IacScanner(Scanner):
    """Every template format, then every IaC check over what they read."""

    name = "iac"

    def __init__(
        self,
        template_formats: Sequence[TemplateFormat] | None = None,
        checks: Sequence[Check] | None = None,
    ) -> None:
        self._formats = template_formats
        self._checks = tuple(CHECKS if checks is None else checks)

    def scan(self, project: Project) -> ScannerOutput:
        findings: list[Finding] = []
        notes: list[str] = []
        apps: list[App] = []
        for fmt in self._formats if self._formats is not None else formats():
            loaded = fmt.load(project)
            notes.extend(loaded.notes)
            apps.extend(loaded.apps)
            for app in loaded.apps:
                for check in self._checks:
                    findings.extend(check(app))
        for note in NOTES:
            notes.extend(note(apps))
        return ScannerOutput(findings=tuple(findings), notes=tuple(notes))
