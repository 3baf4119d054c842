"""The values a scan produces: findings, their grading, the report and the gate policy.

Grades are enums, never strings: `Severity` (how bad if real), `Confidence` (how sure
the rule is that it is real), the CWE weakness and the PureSec Serverless Top 10 risk
(`SasCategory`) a finding maps to.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from donjon.scan.errors import ScanError

__all__ = [
    "AdvisoryRef",
    "Confidence",
    "Cwe",
    "Finding",
    "FindingKind",
    "Location",
    "SasCategory",
    "ScanPolicy",
    "ScanReport",
    "Severity",
    "TaintStep",
]


class _Graded(enum.IntEnum):
    """An ordered grade with a lower-case label and a strict parser."""

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Self:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(m.label for m in cls)
            raise ScanError(
                f"unknown {cls.__name__.lower()} {text!r}", hint=f"use one of: {choices}"
            ) from None


class Severity(_Graded):
    """How much harm the finding does if it is real."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4


class Confidence(_Graded):
    """How sure the rule is that the finding is real."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3


class SasCategory(enum.Enum):
    """The PureSec Serverless Top 10 (2018) risk a finding belongs to."""

    SAS_1 = "SAS-1"
    SAS_2 = "SAS-2"
    SAS_3 = "SAS-3"
    SAS_4 = "SAS-4"
    SAS_5 = "SAS-5"
    SAS_6 = "SAS-6"
    SAS_7 = "SAS-7"
    SAS_8 = "SAS-8"
    SAS_9 = "SAS-9"
    SAS_10 = "SAS-10"

    @property
    def title(self) -> str:
        return _SAS_TITLES[self]


_SAS_TITLES = {
    SasCategory.SAS_1: "Function event-data injection",
    SasCategory.SAS_2: "Broken authentication",
    SasCategory.SAS_3: "Insecure serverless deployment configuration",
    SasCategory.SAS_4: "Over-privileged function permissions and roles",
    SasCategory.SAS_5: "Inadequate function monitoring and logging",
    SasCategory.SAS_6: "Insecure third-party dependencies",
    SasCategory.SAS_7: "Insecure application secrets storage",
    SasCategory.SAS_8: "Denial of service and financial resource exhaustion",
    SasCategory.SAS_9: "Serverless business logic manipulation",
    SasCategory.SAS_10: "Improper exception handling and verbose error messages",
}


class Cwe(enum.IntEnum):
    """The CWE weaknesses Donjon's rules report."""

    PERMISSIVE_FILE_PERMISSIONS = 732
    UNNECESSARY_PRIVILEGES = 250
    LEAST_PRIVILEGE_VIOLATION = 272
    HARD_CODED_PASSWORD = 259
    IMPROPER_CERT_VALIDATION = 295
    CLEARTEXT_TRANSMISSION = 319
    HARD_CODED_KEY = 321
    INADEQUATE_KEY_SIZE = 326
    BROKEN_CRYPTO = 327
    WEAK_HASH = 328
    INSECURE_TEMP_FILE = 377
    RESOURCE_EXHAUSTION = 400
    UNSAFE_DESERIALIZATION = 502
    BIND_ALL_INTERFACES = 605
    XXE = 611
    SSRF = 918
    PATH_TRAVERSAL = 22
    ALLOCATION_WITHOUT_LIMITS = 770
    MISSING_AUTHENTICATION = 306
    HARD_CODED_CREDENTIALS = 798
    OS_COMMAND_INJECTION = 78
    CROSS_SITE_SCRIPTING = 79
    SQL_INJECTION = 89
    CODE_INJECTION = 94
    EVAL_INJECTION = 95
    ERROR_MESSAGE_EXPOSURE = 209
    SENSITIVE_INFORMATION_EXPOSURE = 200
    SENSITIVE_INFORMATION_IN_LOG = 532
    TEMPLATE_INJECTION = 1336
    UNSAFE_REFLECTION = 470
    VULNERABLE_DEPENDENCY = 1395
    # Infrastructure as code (DJ-IAC rules).
    IMPROPER_PRIVILEGE_MANAGEMENT = 269
    INCORRECT_DEFAULT_PERMISSIONS = 276
    IMPROPER_ACCESS_CONTROL = 284
    SINGLE_FACTOR_AUTHENTICATION = 308
    MISSING_ENCRYPTION = 311
    WEAK_PASSWORD_REQUIREMENTS = 521
    UNCHECKED_ERROR_CONDITION = 391
    INSUFFICIENT_LOGGING = 778
    PERMISSIVE_CORS = 942
    UNMAINTAINED_COMPONENT = 1104

    @property
    def label(self) -> str:
        return f"CWE-{self.value}"


class FindingKind(enum.Enum):
    """Which scanner family produced a finding."""

    CODE = "code"
    # A category name, not a credential:
    SECRET = "secret"  # noqa: S105  # nosec B105
    DEPENDENCY = "dependency"
    MANIFEST = "manifest"
    IAC = "iac"


@dataclass(frozen=True)
class Location:
    """A place in a scanned file; `path` is POSIX and relative to the scan root."""

    path: str
    line: int = 1
    column: int = 0  # 1-based; 0 when unknown
    #: IaC findings: the resource's logical id or address (SARIF's logical location).
    resource: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" + (f":{self.column}" if self.column else "")


@dataclass(frozen=True)
class TaintStep:
    """One hop of data from an event source to a sink."""

    location: Location
    description: str


@dataclass(frozen=True)
class AdvisoryRef:
    """The advisory behind a dependency finding."""

    id: str
    package: str
    version: str
    aliases: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()
    summary: str = ""


@dataclass(frozen=True)
class Finding:
    """One problem found, graded and located, with how to fix it."""

    rule_id: str
    title: str
    kind: FindingKind
    severity: Severity
    confidence: Confidence
    cwe: Cwe
    category: SasCategory
    location: Location
    message: str
    fix: str
    snippet: str = ""
    taint_path: tuple[TaintStep, ...] = ()
    advisory: AdvisoryRef | None = None
    #: Stable across line moves: what a baseline records to accept this finding.
    fingerprint: str = ""

    @property
    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.location.path, self.location.line, self.location.column, self.rule_id)


@dataclass(frozen=True)
class ScanPolicy:
    """The gate: a finding blocks when it reaches both thresholds."""

    min_severity: Severity = Severity.HIGH
    min_confidence: Confidence = Confidence.MEDIUM

    def blocks(self, finding: Finding) -> bool:
        return finding.severity >= self.min_severity and finding.confidence >= self.min_confidence

    @classmethod
    def from_strings(cls, severity: str = "high", confidence: str = "medium") -> ScanPolicy:
        """Build a policy from settings text such as ``("high", "medium")``; `ScanError` if bad."""
        return cls(Severity.parse(severity), Confidence.parse(confidence))


@dataclass(frozen=True)
class ScanReport:
    """Everything one scan found, plus what it accepted from the baseline and what it skipped."""

    root: Path
    findings: tuple[Finding, ...]
    suppressed: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()
    files_scanned: int = 0
    lines_scanned: int = 0
    advisories_loaded: int = 0
    duration_s: float = 0.0

    def counts(self) -> dict[Severity, int]:
        """How many findings there are of each severity, highest first."""
        tally = Counter(f.severity for f in self.findings)
        return {s: tally.get(s, 0) for s in sorted(Severity, reverse=True)}

    def blocking(self, policy: ScanPolicy | None = None) -> tuple[Finding, ...]:
        """The findings at or above both thresholds of `policy` (default: the default gate)."""
        gate = policy or ScanPolicy()
        return tuple(f for f in self.findings if gate.blocks(f))
