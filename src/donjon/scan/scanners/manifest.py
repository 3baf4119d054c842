"""`ManifestScanner`: least-privilege and resource rules over donjon.yaml.

The manifest is read with yaml.safe_load on its own (not through the platform's
model), so the scanner also reports on manifests the platform would reject, and
points at the exact line of each problem.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import yaml

from donjon.egress.addresses import IPNetwork
from donjon.manifest.grants import grant_problem
from donjon.scan.interface import Scanner, ScannerOutput
from donjon.scan.model import Confidence, Finding, Location
from donjon.scan.project import ManifestDoc, Project
from donjon.scan.rules import rule

__all__ = ["ManifestScanner"]

_MAX_MEMORY_MB = 8192
_MAX_TIMEOUT_S = 900
_DYNAMIC_SECRET = re.compile(r"secrets\s*(?:\[\s*[^\"'\s\]]|\.get\(\s*[^\"'\s)])")


def _line(root: yaml.Node | None, *path: str | int) -> int:
    """The line of the value at `path` in the composed document (or of its nearest parent)."""
    node = root
    line = 1 if root is None else root.start_mark.line + 1
    for key in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line


class _Check:
    """The findings for one manifest."""

    def __init__(
        self, doc: ManifestDoc, project: Project, egress_networks: Sequence[IPNetwork] = ()
    ) -> None:
        self.doc = doc
        self.egress_networks = egress_networks
        self.data: dict[str, Any] = doc.data or {}
        self.project = project
        self.root = yaml.compose(doc.source.text, Loader=yaml.SafeLoader)
        self.findings: list[Finding] = []

    def add(
        self, rule_id: str, message: str, *path: str | int, confidence: Confidence = Confidence.HIGH
    ) -> None:
        line = _line(self.root, *path)
        digest = hashlib.sha256(f"{rule_id}\0{self.doc.source.rel}\0{message}".encode())
        self.findings.append(
            rule(rule_id).finding(
                Location(self.doc.source.rel, line),
                message,
                confidence=confidence,
                snippet=self.doc.source.line(line).strip()[:200],
                fingerprint=digest.hexdigest()[:32],
            )
        )

    def public_triggers(self) -> None:
        limits = self.data.get("limits")
        rate = limits.get("rate") if isinstance(limits, dict) else None
        for i, trigger in enumerate(self.data.get("triggers") or []):
            http = trigger.get("http") if isinstance(trigger, dict) else None
            if isinstance(http, dict) and http.get("auth") == "public" and not rate:
                path = http.get("path", "?")
                self.add(
                    "DJ-MF-001",
                    f"public http trigger {path} has no limits.rate",
                    "triggers",
                    i,
                    "http",
                    "auth",
                )

    def unauthenticated_triggers(self) -> None:
        for i, trigger in enumerate(self.data.get("triggers") or []):
            if not isinstance(trigger, dict):
                continue
            for kind in ("webhook", "s3"):
                spec = trigger.get(kind)
                if not isinstance(spec, dict) or spec.get("secret"):
                    continue
                if kind == "s3" and spec.get("source") != "push":
                    continue
                what = "webhook" if kind == "webhook" else "s3 push trigger"
                self.add(
                    "DJ-MF-005",
                    f"{what} {spec.get('path', '?')} has no secret",
                    "triggers",
                    i,
                    kind,
                )

    def broad_grants(self) -> None:
        perms = self.data.get("permissions")
        if not isinstance(perms, dict):
            return
        for kind in ("secrets", "egress", "invoke"):
            grant = perms.get(kind)
            if isinstance(grant, str):
                self.add(
                    "DJ-MF-002",
                    f"permissions.{kind} is {grant!r}, not a list of exact grants",
                    "permissions",
                    kind,
                )
                continue
            for i, item in enumerate(grant or []):
                reason = grant_problem(kind, str(item), self.egress_networks)
                if reason:
                    self.add(
                        "DJ-MF-002",
                        f"permissions.{kind} grants {item!r}: {reason}",
                        "permissions",
                        kind,
                        i,
                    )

    def unused_secrets(self) -> None:
        perms = self.data.get("permissions")
        granted = perms.get("secrets") if isinstance(perms, dict) else None
        if not isinstance(granted, list):
            return
        prefix = f"{self.doc.bundle_dir}/" if self.doc.bundle_dir else ""
        code = "\n".join(f.text for f in self.project.python if f.rel.startswith(prefix))
        dynamic = bool(_DYNAMIC_SECRET.search(code))
        for i, name in enumerate(granted):
            if not isinstance(name, str) or "*" in name:
                continue
            if not re.search(rf"([\"']){re.escape(name)}\1", code):
                self.add(
                    "DJ-MF-003",
                    f"secret {name!r} is granted but no code reads it",
                    "permissions",
                    "secrets",
                    i,
                    confidence=Confidence.LOW if dynamic else Confidence.MEDIUM,
                )

    def bounds(self) -> None:
        missing = [k for k in ("memory_mb", "timeout_s") if k not in self.data]
        if missing:
            self.add(
                "DJ-MF-004",
                f"{' and '.join(missing)} not set: the platform default "
                "applies instead of a bound chosen for this function",
                "name",
            )
        for key, ceiling in (("memory_mb", _MAX_MEMORY_MB), ("timeout_s", _MAX_TIMEOUT_S)):
            if key not in self.data:
                continue
            value = self.data[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                self.add("DJ-MF-004", f"{key} is {value!r}, not a positive number", key)
            elif value > ceiling:
                self.add("DJ-MF-004", f"{key} is {value}, above the platform's {ceiling}", key)


class ManifestScanner(Scanner):
    """Public triggers without rate limits, broad grants, unused secrets, missing bounds."""

    name = "manifest"

    def __init__(self, egress_networks: Sequence[IPNetwork] = ()) -> None:
        #: Networks the node's egress proxy may dial (DONJON_EGRESS_ALLOW_NETWORKS).
        self.egress_networks = tuple(egress_networks)

    def scan(self, project: Project) -> ScannerOutput:
        findings: list[Finding] = []
        notes: list[str] = []
        for doc in project.manifests:
            if doc.data is None:
                notes.append(f"{doc.source.rel}: {doc.error}; manifest rules skipped")
                continue
            check = _Check(doc, project, self.egress_networks)
            check.public_triggers()
            check.unauthenticated_triggers()
            check.broad_grants()
            check.unused_secrets()
            check.bounds()
            findings += check.findings
        return ScannerOutput(tuple(findings), tuple(notes))
