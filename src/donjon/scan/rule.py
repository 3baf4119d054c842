"""`Rule`: one catalog entry (id, grading, weakness, risk, fix) and how it makes a finding.

Kept apart from the catalogs (`donjon.scan.rules` for code, secrets, dependencies and
manifests; `donjon.scan.iac.catalog` for templates) so both can import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from donjon.scan.model import (
    AdvisoryRef,
    Confidence,
    Cwe,
    Finding,
    FindingKind,
    Location,
    SasCategory,
    Severity,
    TaintStep,
)

__all__ = ["Rule"]


@dataclass(frozen=True)
class Rule:
    """What a rule looks for, how bad it is by default, and how to fix what it finds."""

    id: str
    name: str
    kind: FindingKind
    severity: Severity
    cwe: Cwe
    category: SasCategory
    description: str
    fix: str

    def finding(
        self,
        location: Location,
        message: str,
        *,
        confidence: Confidence,
        severity: Severity | None = None,
        snippet: str = "",
        taint_path: tuple[TaintStep, ...] = (),
        advisory: AdvisoryRef | None = None,
        fingerprint: str = "",
        fix: str | None = None,
    ) -> Finding:
        return Finding(
            rule_id=self.id,
            title=self.name,
            kind=self.kind,
            severity=severity or self.severity,
            confidence=confidence,
            cwe=self.cwe,
            category=self.category,
            location=location,
            message=message,
            fix=fix or self.fix,
            snippet=snippet,
            taint_path=taint_path,
            advisory=advisory,
            fingerprint=fingerprint,
        )
