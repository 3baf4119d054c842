"""Shift-left security: the deploy gate and `donjon scan`.

One engine checks a function bundle (or any Python project) for code injection
and misuse, hard-coded secrets, vulnerable dependencies and over-broad manifests::

    db = AdvisoryDB.load(path)                      # once; reuse across scans
    report = scan_path(bundle, advisories=db, baseline=None)
    blocked = report.blocking(ScanPolicy())         # high severity, medium+ confidence
    print(render_text(report))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from donjon.scan.baseline import Baseline, write_baseline
from donjon.scan.deps import (
    OSV_PYPI_EXPORT_URL,
    Advisory,
    AdvisoryDB,
    advisories_dir,
    cache_dir_for,
    update_advisory_db,
)
from donjon.scan.errors import ScanError
from donjon.scan.format import FormatError, render_json, render_sarif, render_text, renderer_for
from donjon.scan.interface import Scanner, ScannerOutput
from donjon.scan.isolated import IsolatedScanner, ScanLimitExceeded, ScanLimits
from donjon.scan.model import (
    AdvisoryRef,
    Confidence,
    Cwe,
    Finding,
    FindingKind,
    Location,
    SasCategory,
    ScanPolicy,
    ScanReport,
    Severity,
    TaintStep,
)
from donjon.scan.rules import RULES, Rule

if TYPE_CHECKING:
    from donjon.scan.engine import default_scanners, scan_path

__all__ = [
    "OSV_PYPI_EXPORT_URL",
    "RULES",
    "Advisory",
    "AdvisoryDB",
    "AdvisoryRef",
    "Baseline",
    "Confidence",
    "Cwe",
    "Finding",
    "FindingKind",
    "FormatError",
    "IsolatedScanner",
    "Location",
    "Rule",
    "SasCategory",
    "ScanError",
    "ScanLimitExceeded",
    "ScanLimits",
    "ScanPolicy",
    "ScanReport",
    "Scanner",
    "ScannerOutput",
    "Severity",
    "TaintStep",
    "advisories_dir",
    "cache_dir_for",
    "default_scanners",
    "render_json",
    "render_sarif",
    "render_text",
    "renderer_for",
    "scan_path",
    "update_advisory_db",
    "write_baseline",
]

#: Loaded on first use (PEP 562): the scanners (detect-secrets, the code analysis) run in
#: the scan helper and `donjon scan`, never in the node's own process, which imports this
#: package for its policy, report and helper types.
_LAZY = frozenset({"default_scanners", "scan_path"})


if not TYPE_CHECKING:  # seen by mypy, a module __getattr__ would make any name of it Any

    def __getattr__(name: str) -> Any:
        if name in _LAZY:
            from donjon.scan import engine

            return getattr(engine, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
