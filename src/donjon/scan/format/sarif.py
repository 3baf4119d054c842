"""SARIF 2.1.0, as code-scanning tools (GitHub, GitLab, Azure DevOps) load it.

Rules carry ``security-severity`` and CWE tags; taint paths become code flows;
findings accepted by the baseline are present with an external suppression.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from donjon import __version__
from donjon.scan.format.interface import Renderer
from donjon.scan.model import Finding, Location, ScanReport, Severity
from donjon.scan.rules import RULES, Rule

__all__ = ["SARIF_SCHEMA", "SarifRenderer"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
}
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
}
_BASE = "SRCROOT"


def _rule(r: Rule) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "shortDescription": {"text": r.name.replace("-", " ")},
        "fullDescription": {"text": r.description},
        "help": {
            "text": f"{r.description}\nFix: {r.fix}",
            "markdown": f"{r.description}\n\n**Fix:** {r.fix}",
        },
        "defaultConfiguration": {"level": _LEVEL[r.severity]},
        "properties": {
            "tags": ["security", f"external/cwe/cwe-{r.cwe.value}", r.category.value, r.kind.value],
            "security-severity": _SECURITY_SEVERITY[r.severity],
            "precision": "high" if r.kind.value in ("manifest", "dependency") else "medium",
            "problem.severity": _LEVEL[r.severity],
        },
    }


def _location(loc: Location, snippet: str = "", message: str = "") -> dict[str, Any]:
    region: dict[str, Any] = {"startLine": max(loc.line, 1)}
    if loc.column:
        region["startColumn"] = loc.column
    if snippet:
        region["snippet"] = {"text": snippet}
    out: dict[str, Any] = {
        "physicalLocation": {
            "artifactLocation": {
                "uri": quote(PurePosixPath(loc.path).as_posix()),
                "uriBaseId": _BASE,
            },
            "region": region,
        }
    }
    if loc.resource:
        # The template resource (logical id or Terraform address) the property belongs to.
        out["logicalLocations"] = [{"fullyQualifiedName": loc.resource, "kind": "resource"}]
    if message:
        out["message"] = {"text": message}
    return out


def _result(f: Finding, index: dict[str, int], suppressed: bool) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": f.rule_id,
        "ruleIndex": index[f.rule_id],
        "level": _LEVEL[f.severity],
        "message": {"text": f"{f.message}. Fix: {f.fix}"},
        "locations": [_location(f.location, f.snippet)],
        "partialFingerprints": {"donjonFingerprint/v1": f.fingerprint},
        "properties": {
            "severity": f.severity.label,
            "confidence": f.confidence.label,
            "cwe": f.cwe.label,
            "category": f.category.value,
            "security-severity": _SECURITY_SEVERITY[f.severity],
        },
    }
    if f.taint_path:
        steps = [{"location": _location(s.location, message=s.description)} for s in f.taint_path]
        result["codeFlows"] = [{"threadFlows": [{"locations": steps}]}]
    if f.advisory is not None:
        result["properties"]["advisory"] = {
            "id": f.advisory.id,
            "aliases": list(f.advisory.aliases),
            "package": f.advisory.package,
            "fixed": list(f.advisory.fixed),
        }
    if suppressed:
        result["suppressions"] = [
            {
                "kind": "external",
                "status": "accepted",
                "justification": "accepted in the scan baseline",
            }
        ]
    return result


class SarifRenderer(Renderer):
    """One run, every catalog rule, results relative to ``%SRCROOT%``."""

    name = "sarif"

    def render(self, report: ScanReport) -> str:
        rules = list(RULES.values())
        index = {r.id: i for i, r in enumerate(rules)}
        results = [_result(f, index, False) for f in report.findings]
        results += [_result(f, index, True) for f in report.suppressed]
        run: dict[str, Any] = {
            "tool": {
                "driver": {
                    "name": "donjon",
                    "version": __version__,
                    "semanticVersion": __version__,
                    "rules": [_rule(r) for r in rules],
                }
            },
            "originalUriBaseIds": {_BASE: {"uri": report.root.as_uri() + "/"}},
            "columnKind": "unicodeCodePoints",
            "results": results,
            "invocations": [
                {
                    "executionSuccessful": True,
                    "toolExecutionNotifications": [
                        {"level": "note", "message": {"text": n}} for n in report.notes
                    ],
                }
            ],
        }
        doc = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
        return json.dumps(doc, indent=2) + "\n"
