"""What each tool reported on one project, read from its JSON output, and how it scores
against the project's expected findings (bench/iac_compare.py adds the scores up).

A report is a `Hit`: a check id at a file and a span of lines (Checkov: the resource's
lines; cfn-lint: the lines of the resource its path names, else its own line; Donjon:
its line). A hit of a mapped check finds an expected finding of the same rule in the same
file when the span holds the finding's line, or, for a finding outside every resource
(SAM Globals, parameters, Terraform variables and locals, serverless.yml), anywhere in
the file: the benefit of the doubt goes to the other tools.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iac_corpus import Key, Project

TOOLS = ("donjon", "checkov", "cfn-lint")


@dataclass(frozen=True)
class Hit:
    check: str
    file: str
    lo: int
    hi: int


@dataclass(frozen=True)
class Mapping:
    """bench/iac_compare_map.toml: tool -> check id -> Donjon rule ids."""

    checks: dict[str, dict[str, frozenset[str]]]
    no_checkov: dict[str, str]

    def rules(self, tool: str, check: str) -> frozenset[str]:
        if tool == "donjon":
            return frozenset({check})
        return self.checks.get(tool, {}).get(check, frozenset())

    def covered(self, tool: str) -> set[str]:
        """Donjon rules at least one of the tool's checks stands for."""
        return {r for rules in self.checks.get(tool, {}).values() for r in rules}


def load_mapping(path: Path) -> Mapping:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    checks = {
        tool: {check: frozenset(rules) for check, rules in data.get(tool, {}).items()}
        for tool in ("checkov", "cfn-lint")
    }
    return Mapping(checks, dict(data.get("no-checkov-equivalent", {})))


@dataclass
class Score:
    """One tool on one project (or summed over many)."""

    expected: int = 0
    found: int = 0
    false_alarms: int = 0  # mapped reports on a negative project
    extras: int = 0  # mapped reports on a positive project that match nothing expected
    others: int = 0  # reports of checks the mapping does not list
    projects: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    found_keys: set[Key] = field(default_factory=set)
    alarm_checks: Counter[str] = field(default_factory=Counter)

    def add(self, other: Score) -> None:
        self.expected += other.expected
        self.found += other.found
        self.false_alarms += other.false_alarms
        self.extras += other.extras
        self.others += other.others
        self.projects += other.projects
        self.wall += other.wall
        self.cpu += other.cpu
        self.found_keys |= other.found_keys
        self.alarm_checks.update(other.alarm_checks)


def _json(stdout: str, empty: str) -> Any:
    """The tool's JSON output; a crash's partial output is reported and read as nothing."""
    try:
        return json.loads(stdout or empty)
    except ValueError:
        print(f"unreadable tool output: {stdout[:200]!r}", file=sys.stderr)
        return json.loads(empty)


def donjon_hits(stdout: str) -> list[Hit]:
    report = _json(stdout, "{}")
    return [Hit(f["rule_id"], f["path"], f["line"], f["line"]) for f in report.get("findings", [])]


def checkov_hits(stdout: str) -> list[Hit]:
    """Failed checks of every framework's report (one dict, a list, or an empty summary)."""
    data = _json(stdout, "[]")
    reports = data if isinstance(data, list) else [data]
    hits: list[Hit] = []
    for report in reports:
        for failed in report.get("results", {}).get("failed_checks", []):
            lo, hi = failed.get("file_line_range") or (0, 0)
            file = str(failed["file_path"]).lstrip("/")
            hits.append(Hit(failed["check_id"], file, int(lo), int(hi)))
    return hits


def cfn_lint_hits(stdout: str, project: Project) -> list[Hit]:
    hits: list[Hit] = []
    for match in _json(stdout, "[]"):
        file = Path(match["Filename"]).resolve().relative_to(project.path.resolve()).as_posix()
        where = match["Location"]
        line = int(where["Start"]["LineNumber"])
        path = where.get("Path") or []
        span = None
        if len(path) >= 2 and path[0] == "Resources":
            span = project.spans.get(file, {}).get(str(path[1]))
        lo, hi = span or (line, line)
        hits.append(Hit(match["Rule"]["Id"], file, lo, hi))
    return hits


def score(project: Project, tool: str, hits: list[Hit], mapping: Mapping) -> Score:
    """How `hits` meet the project's expected findings."""
    result = Score(expected=len(project.expected), projects=1)
    mapped = {h for h in hits if mapping.rules(tool, h.check)}
    result.others = len({h for h in hits if h not in mapped})
    if project.negative:
        result.false_alarms = len(mapped)
        result.alarm_checks.update(h.check for h in mapped)
        return result
    used: set[Hit] = set()
    for file, line, rule in project.expected:
        # Donjon's own marks are met line for line, as the corpus suite meets them.
        anywhere = tool != "donjon" and project.resource_at(file, line) is None
        for hit in mapped:
            if hit.file != file or rule not in mapping.rules(tool, hit.check):
                continue
            if hit.lo <= line <= hit.hi or anywhere:
                result.found_keys.add((f"{project.name}/{file}", line, rule))
                used.add(hit)
    result.found = len(result.found_keys)
    result.extras = len(mapped - used)
    return result
