"""The machine format: the whole report as one JSON document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from donjon import __version__
from donjon.scan.errors import ScanError
from donjon.scan.format.interface import FormatError, Renderer
from donjon.scan.model import (
    AdvisoryRef,
    Confidence,
    Cwe,
    Finding,
    FindingKind,
    Location,
    SasCategory,
    ScanReport,
    Severity,
    TaintStep,
)

__all__ = ["JsonRenderer", "finding_dict", "parse_json_report"]

JSON_FORMAT_VERSION = 1


def finding_dict(f: Finding) -> dict[str, Any]:
    """A finding as plain JSON values."""
    return {
        "rule_id": f.rule_id,
        "title": f.title,
        "kind": f.kind.value,
        "severity": f.severity.label,
        "confidence": f.confidence.label,
        "cwe": f.cwe.label,
        "category": f.category.value,
        "category_title": f.category.title,
        "path": f.location.path,
        "line": f.location.line,
        "column": f.location.column,
        "resource": f.location.resource,
        "message": f.message,
        "fix": f.fix,
        "snippet": f.snippet,
        "taint_path": [
            {
                "path": s.location.path,
                "line": s.location.line,
                "column": s.location.column,
                "description": s.description,
            }
            for s in f.taint_path
        ],
        "advisory": None
        if f.advisory is None
        else {
            "id": f.advisory.id,
            "package": f.advisory.package,
            "version": f.advisory.version,
            "aliases": list(f.advisory.aliases),
            "fixed": list(f.advisory.fixed),
        },
        "fingerprint": f.fingerprint,
    }


class JsonRenderer(Renderer):
    """Stable keys; severities and confidences as lower-case labels."""

    name = "json"

    def render(self, report: ScanReport) -> str:
        doc = {
            "format_version": JSON_FORMAT_VERSION,
            "tool": {"name": "donjon", "version": __version__},
            "root": str(report.root),
            "summary": {
                "findings": len(report.findings),
                "suppressed": len(report.suppressed),
                "by_severity": {s.label: n for s, n in report.counts().items()},
                "files": report.files_scanned,
                "lines": report.lines_scanned,
                "advisories": report.advisories_loaded,
                "duration_s": round(report.duration_s, 3),
            },
            "findings": [finding_dict(f) for f in report.findings],
            "suppressed": [finding_dict(f) for f in report.suppressed],
            "notes": list(report.notes),
        }
        return json.dumps(doc, indent=2) + "\n"


def _finding(d: dict[str, Any]) -> Finding:
    advisory = d.get("advisory")
    return Finding(
        rule_id=d["rule_id"],
        title=d["title"],
        kind=FindingKind(d["kind"]),
        severity=Severity.parse(d["severity"]),
        confidence=Confidence.parse(d["confidence"]),
        cwe=Cwe(int(str(d["cwe"]).removeprefix("CWE-"))),
        category=SasCategory(d["category"]),
        location=Location(
            d["path"], int(d["line"]), int(d["column"]), str(d.get("resource") or "")
        ),
        message=d["message"],
        fix=d["fix"],
        snippet=d["snippet"],
        taint_path=tuple(
            TaintStep(Location(s["path"], int(s["line"]), int(s["column"])), s["description"])
            for s in d["taint_path"]
        ),
        advisory=None
        if advisory is None
        else AdvisoryRef(
            advisory["id"],
            advisory["package"],
            advisory["version"],
            tuple(advisory["aliases"]),
            tuple(advisory["fixed"]),
        ),
        fingerprint=d["fingerprint"],
    )


def parse_json_report(text: str | bytes) -> ScanReport:
    """The report a `JsonRenderer` wrote (by another process: the deploy-time scan's);
    `FormatError` if the document is not one."""
    try:
        doc = json.loads(text)
        if doc.get("format_version") != JSON_FORMAT_VERSION:
            raise ValueError(f"format_version {doc.get('format_version')!r}")
        summary = doc["summary"]
        return ScanReport(
            root=Path(doc["root"]),
            findings=tuple(_finding(f) for f in doc["findings"]),
            suppressed=tuple(_finding(f) for f in doc["suppressed"]),
            notes=tuple(str(n) for n in doc["notes"]),
            files_scanned=int(summary["files"]),
            lines_scanned=int(summary["lines"]),
            advisories_loaded=int(summary["advisories"]),
            duration_s=float(summary["duration_s"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError, ScanError) as e:
        raise FormatError(
            f"not a Donjon JSON scan report: {e}",
            hint="the scanner and the node must be the same Donjon version",
        ) from e
