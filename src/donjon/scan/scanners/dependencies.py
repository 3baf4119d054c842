"""`DependencyScanner`: declared and vendored dependencies against OSV advisories.

Exact versions (pins, lock files, ``.deps/`` distributions) are matched with high
confidence. A range is reported when it admits an affected version: with medium
confidence when it also rules out every fixed version (whatever is installed is
vulnerable), low when a fixed version is allowed too. Within one directory, only the
most exact declarations of a package count (``.deps/`` over a lock over a range).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import PurePosixPath

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from donjon.scan.deps.advisories import AdvisoryDB, AffectedRange
from donjon.scan.deps.depfiles import Dependency, parse_dependency_file, parse_installed
from donjon.scan.interface import Scanner, ScannerOutput
from donjon.scan.model import AdvisoryRef, Confidence, Finding
from donjon.scan.project import DEPS_DIR, Project
from donjon.scan.rules import rule

__all__ = ["DependencyScanner"]

_UPPER_BOUNDS = frozenset({"<", "<=", "==", "===", "~="})
_ZERO = Version("0")


def _directory(dep: Dependency) -> str:
    parts = PurePosixPath(dep.location.path).parts
    if DEPS_DIR in parts:
        return "/".join(parts[: parts.index(DEPS_DIR)])
    if len(parts) > 1 and parts[-2].endswith((".dist-info", ".egg-info")):
        return "/".join(parts[:-2])  # installed beside the code: that directory's
    return "/".join(parts[:-1])


def _most_exact(deps: list[Dependency]) -> list[Dependency]:
    best: dict[tuple[str, str], int] = defaultdict(int)
    for dep in deps:
        key = (_directory(dep), dep.name)
        best[key] = max(best[key], dep.precision)
    return [d for d in deps if d.precision == best[(_directory(d), d.name)]]


def _spec_versions(spec: SpecifierSet) -> set[Version]:
    out = set()
    for s in spec:
        try:
            out.add(Version(s.version))
        except ValueError:  # InvalidVersion (a wildcard), or past int()'s digit limit
            continue
    return out


class DependencyScanner(Scanner):
    """Known-vulnerable versions in requirements, lock files, pyproject and ``.deps/``."""

    name = "dependencies"

    def __init__(self, advisories: AdvisoryDB | None) -> None:
        self.advisories = advisories

    def scan(self, project: Project) -> ScannerOutput:
        notes: list[str] = []
        files = {f.rel: f for f in project.files}
        deps: list[Dependency] = []
        for source in project.dependency_files:
            deps += parse_dependency_file(source, files, notes)
        for metadata in project.installed:
            installed = parse_installed(metadata)
            if installed is not None:
                deps.append(installed)
        if self.advisories is None:
            if deps:
                notes.append(
                    f"no advisory database: {len(deps)} dependencies were not checked "
                    "(pass --advisories, or run `donjon scan --update-db`)"
                )
            return ScannerOutput((), tuple(notes))
        findings: list[Finding] = []
        seen: set[tuple[str, int, str]] = set()
        for dep in _most_exact(deps):
            line_text = (
                files[dep.location.path].line(dep.location.line)
                if (dep.location.path in files)
                else ""
            )
            reported: set[str] = set()
            for rng in self.advisories.ranges_for(dep.name):
                adv = rng.advisory
                key = (dep.location.path, dep.location.line, adv.id)
                if key in seen or adv.id in reported or reported & set(adv.aliases):
                    continue
                finding = self._check(dep, rng, line_text)
                if finding is not None:
                    seen.add(key)
                    reported.update({adv.id, *adv.aliases})
                    findings.append(finding)
        return ScannerOutput(tuple(findings), tuple(notes))

    def _check(self, dep: Dependency, rng: AffectedRange, line_text: str) -> Finding | None:
        fixed = ", ".join(str(v) for v in rng.fixed)
        if dep.version is not None:
            if not rng.affects(dep.version):
                return None
            confidence = Confidence.HIGH
            what = f"{dep.name} {dep.version} is affected by {rng.advisory.id}"
        else:
            candidates = rng.versions | rng.boundaries | _spec_versions(dep.specifier)
            bad = sorted(
                v
                for v in candidates
                if dep.specifier.contains(v, prereleases=True) and rng.affects(v)
            )
            if not bad:
                return None
            unbounded = not any(s.operator in _UPPER_BOUNDS for s in dep.specifier)
            fix_allowed = bool(rng.fixed) and (
                unbounded or any(dep.specifier.contains(v, prereleases=True) for v in rng.fixed)
            )
            confidence = Confidence.LOW if fix_allowed else Confidence.MEDIUM
            example = (
                f"such as {bad[-1]}"
                if bad[-1] != _ZERO
                else f"those before {fixed}"
                if fixed
                else "any version"
            )
            what = f"{dep.display} allows versions affected by {rng.advisory.id} ({example})"
        aliases = rng.advisory.aliases
        message = what + (f" ({', '.join(aliases)})" if aliases else "")
        if rng.advisory.summary:
            message += f": {rng.advisory.summary.splitlines()[0][:160]}"
        fix = (
            f"Upgrade {dep.name} to {fixed} or later."
            if fixed
            else f"No fixed version of {dep.name} is published: remove or replace it."
        )
        ref = AdvisoryRef(
            id=rng.advisory.id,
            package=dep.name,
            version=str(dep.version or dep.specifier),
            aliases=aliases,
            fixed=tuple(str(v) for v in rng.fixed),
            summary=rng.advisory.summary,
        )
        digest = hashlib.sha256(
            f"DJ-DEP-001\0{dep.location.path}\0{dep.name}\0{ref.version}\0{ref.id}".encode()
        ).hexdigest()[:32]
        return rule("DJ-DEP-001").finding(
            dep.location,
            message + f" [{rng.advisory.rating}]",
            confidence=confidence,
            severity=rng.advisory.severity,
            snippet=line_text.strip()[:200],
            advisory=ref,
            fingerprint=digest,
            fix=fix,
        )
