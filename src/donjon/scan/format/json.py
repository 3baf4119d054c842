"""The machine format: the whole report as one JSON document."""

from __future__ import annotations

import json
from typing import Any

from donjon import __version__
from donjon.scan.format.interface import Renderer
from donjon.scan.model import Finding, ScanReport

__all__ = ["JsonRenderer", "finding_dict"]

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
        "message": f.message,
        "fix": f.fix,
        "snippet": f.snippet,
        "taint_path": [
            {"path": s.location.path, "line": s.location.line, "column": s.location.column,
             "description": s.description}
            for s in f.taint_path
        ],
        "advisory": None if f.advisory is None else {
            "id": f.advisory.id, "package": f.advisory.package, "version": f.advisory.version,
            "aliases": list(f.advisory.aliases), "fixed": list(f.advisory.fixed),
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
