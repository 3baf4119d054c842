"""Shift-left security: the deploy gate and `donjon scan`.

One engine checks a function bundle (or any Python project) for code injection
and misuse, hard-coded secrets, vulnerable dependencies and over-broad manifests::

    db = AdvisoryDB.load(path)                      # once; reuse across scans
    report = scan_path(bundle, advisories=db, baseline=None)
    blocked = report.blocking(ScanPolicy())         # high severity, medium+ confidence
    print(render_text(report))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from donjon.scan.baseline import Baseline, write_baseline
    from donjon.scan.deps import (
        OSV_PYPI_EXPORT_URL,
        Advisory,
        AdvisoryDB,
        advisories_dir,
        cache_dir_for,
        update_advisory_db,
    )
    from donjon.scan.engine import default_scanners, scan_path
    from donjon.scan.errors import ScanError
    from donjon.scan.format import (
        FormatError,
        render_json,
        render_sarif,
        render_text,
        renderer_for,
    )
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

# Each name is imported on first use (donjon/lazy_exports.py): the node imports this
# package for its policy, report and helper types, and must not load with them the
# scanners (they run in the scan helper and `donjon scan`) or the rule catalog (SARIF's);
# the scan helper, which imports the scanners' own modules, loads no OSV updater (nor
# httpx) with them.
if not TYPE_CHECKING:  # mypy would make every name of a module __getattr__ Any
    __getattr__ = lazy_exports(
        globals(),
        {
            "baseline": ("Baseline", "write_baseline"),
            "deps.advisories": ("Advisory", "AdvisoryDB"),
            "deps.advisory_cache": ("cache_dir_for",),
            "deps.osv_update": ("OSV_PYPI_EXPORT_URL", "advisories_dir", "update_advisory_db"),
            "engine": ("default_scanners", "scan_path"),
            "errors": ("ScanError",),
            "format": ("FormatError", "render_json", "render_sarif", "render_text", "renderer_for"),
            "interface": ("Scanner", "ScannerOutput"),
            "isolated": ("IsolatedScanner", "ScanLimitExceeded", "ScanLimits"),
            "model": (
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
            ),
            "rules": ("RULES", "Rule"),
        },
    )
