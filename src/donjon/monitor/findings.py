"""What a detector finds: a typed finding, resting on the audit records it saw.

A finding is a value (GuardDuty's and Falco's typed findings): its kind names
what was seen (`auth.credential_stuffing`, `egress.refused`, ...), its subject
names who or what it is about, and its evidence names the audit seqs it rests
on, so anyone can prove each one against a signed checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

from donjon.errors import Error

__all__ = [
    "MODES",
    "SEVERITIES",
    "Finding",
    "FindingError",
    "Mode",
    "Severity",
    "Subject",
    "SubjectKind",
]

Severity = Literal["low", "medium", "high", "critical"]
#: learn: the detector learns, nothing is raised; alert: findings become alerts;
#: block: alerts, and the responder acts on them.
Mode = Literal["learn", "alert", "block"]
SubjectKind = Literal["principal", "function", "source", "node"]

SEVERITIES: tuple[Severity, ...] = get_args(Severity)
MODES: tuple[Mode, ...] = get_args(Mode)
_SUBJECT_KINDS: tuple[SubjectKind, ...] = get_args(SubjectKind)


class FindingError(Error):
    """A finding (or a subject) that cannot be what it claims."""

    title = "Invalid finding"


@dataclass(frozen=True, slots=True)
class Subject:
    """Who or what a finding is about: a principal, a function, a source address, the node."""

    kind: SubjectKind
    id: str
    #: The hash, computed once: subjects key the baselines' tables, which hash them
    #: for every call (the generated `__hash__` built a tuple each time).
    _hash: int = field(init=False, repr=False, compare=False)
    #: `kind:id`, as `str` gives it: what the baselines' tables key a subject's series by
    #: (series.py; a string hashes in C, once). A kind has no `:`, so it is one to one.
    text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in _SUBJECT_KINDS:
            raise FindingError(
                f"unknown subject kind {self.kind!r}", hint=f"one of {', '.join(_SUBJECT_KINDS)}"
            )
        object.__setattr__(self, "_hash", hash((self.kind, self.id)))
        object.__setattr__(self, "text", f"{self.kind}:{self.id}")

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[Subject], tuple[SubjectKind, str]]:
        """Made again from its kind and id (a string's hash differs between processes)."""
        return (Subject, (self.kind, self.id))

    def __str__(self) -> str:
        """`kind:id`, the alert record's target."""
        return self.text


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a detector saw, with the audit seqs it rests on."""

    #: e.g. "auth.credential_stuffing", "egress.refused", "sandbox.violation",
    #: "deploy.scan_skipped", "baseline.call_rate", "first_seen.function".
    kind: str
    #: The detector's name (what DONJON_MONITOR_MODES names).
    detector: str
    severity: Severity
    subject: Subject
    #: One line a person reads.
    summary: str
    #: The audit seqs it rests on (at least one).
    evidence: tuple[int, ...]
    ts: float
    detail: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: What tells it apart from other findings of its kind and subject (an advisory
    #: on a function): findings with different keys are never deduplicated together.
    key: str = ""

    def __post_init__(self) -> None:
        if not self.evidence:
            raise FindingError(
                f"finding {self.kind!r} has no evidence",
                hint="a finding names at least one audit seq it rests on",
            )
        if self.severity not in SEVERITIES:
            raise FindingError(
                f"unknown severity {self.severity!r}", hint=f"one of {', '.join(SEVERITIES)}"
            )
