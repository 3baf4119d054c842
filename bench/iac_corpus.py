"""The IaC corpus as bench/iac_compare.py reads it: projects, expected findings, and the
line span of each resource, so a tool that reports on a resource can be matched with a
finding expected on one of its lines.

Expected findings are marked as tests/scan/test_scan_corpus.py reads them: a trailing
`# expect: RULE[@confidence]` comment, or an EXPECTED file of `path:line RULE` lines
(confidence is not compared here: the other tools have none).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

_MARK = re.compile(r"#\s*expect:\s*((?:DJ-[A-Z]+-\d+(?:@\w+)?[\s,]*)+)")
_ITEM = re.compile(r"(DJ-[A-Z]+-\d+)(?:@\w+)?")
#: A Terraform block at the top level: `resource "type" "name" {` or `data ...`.
_TF_BLOCK = re.compile(r'^(resource|data)\s+"([^"]+)"\s+"([^"]+)"')
_TEMPLATE_SUFFIXES = (".yaml", ".yml", ".json", ".template")
_SERVERLESS = ("serverless.yml", "serverless.yaml", "serverless.json")

Key = tuple[str, int, str]  # (path inside the project, line, Donjon rule id)
Span = tuple[int, int]  # first and last line, both included


@dataclass
class Project:
    """One positive or negative directory of one rule."""

    path: Path
    group: str  # "corpus" or "pending"
    negative: bool
    expected: set[Key] = field(default_factory=set)
    #: file -> resource name -> span (CloudFormation/SAM logical ids, Terraform addresses)
    spans: dict[str, dict[str, Span]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"

    def templates(self) -> list[Path]:
        """The CloudFormation and SAM templates (what cfn-lint is given)."""
        return [
            p
            for p in sorted(self.path.rglob("*"))
            if p.is_file()
            and p.suffix in _TEMPLATE_SUFFIXES
            and p.name not in _SERVERLESS
            and "AWS::" in p.read_text(encoding="utf-8", errors="replace")
        ]

    def resource_at(self, file: str, line: int) -> Span | None:
        """The span of the resource whose lines hold `line`, if one does."""
        for lo, hi in self.spans.get(file, {}).values():
            if lo <= line <= hi:
                return (lo, hi)
        return None


def projects(roots: list[tuple[str, Path]]) -> list[Project]:
    """Every `<root>/<rule>/positive|negative` directory (rules starting DJ-IAC-)."""
    found: list[Project] = []
    for group, root in roots:
        for case in sorted(root.glob("DJ-IAC-*/*")):
            if case.is_dir() and case.name in {"positive", "negative"}:
                project = Project(case, group, case.name == "negative")
                project.expected = expected(case)
                project.spans = spans(case)
                found.append(project)
    return found


def expected(case: Path) -> set[Key]:
    """The findings marked in `case`, keyed by path inside `case`, line and rule."""
    found: set[Key] = set()
    for file in sorted(p for p in case.rglob("*") if p.is_file()):
        rel = file.relative_to(case).as_posix()
        text = file.read_text(encoding="utf-8", errors="replace")
        if file.name == "EXPECTED":
            here = file.parent.relative_to(case).as_posix()
            prefix = "" if here == "." else f"{here}/"
            for line in text.splitlines():
                if line.strip():
                    where, items = line.split(maxsplit=1)
                    path, at = where.rsplit(":", 1)
                    found |= {(prefix + path, int(at), r) for r in _ITEM.findall(items)}
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            mark = _MARK.search(line)
            if mark:
                found |= {(rel, number, r) for r in _ITEM.findall(mark.group(1))}
    return found


def spans(case: Path) -> dict[str, dict[str, Span]]:
    """Resource spans of every template and .tf file in `case` (serverless.yml: none)."""
    found: dict[str, dict[str, Span]] = {}
    for file in sorted(p for p in case.rglob("*") if p.is_file()):
        rel = file.relative_to(case).as_posix()
        if file.suffix == ".tf":
            found[rel] = _terraform_spans(file.read_text(encoding="utf-8", errors="replace"))
        elif file.suffix in _TEMPLATE_SUFFIXES and file.name not in _SERVERLESS:
            found[rel] = _cfn_spans(file)
    return found


def _terraform_spans(text: str) -> dict[str, Span]:
    """Top-level resource and data blocks, from their header to the `}` in column 0."""
    found: dict[str, Span] = {}
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        head = _TF_BLOCK.match(line)
        if not head:
            continue
        end = next(
            (n for n in range(number, len(lines) + 1) if lines[n - 1].startswith("}")), number
        )
        kind, rtype, name = head.groups()
        address = f"{rtype}.{name}" if kind == "resource" else f"data.{rtype}.{name}"
        found[address] = (number, end)
    return found


def _cfn_spans(file: Path) -> dict[str, Span]:
    """Resources of a CloudFormation/SAM template, through cfn-lint's decoder (its nodes
    keep their lines); a file it cannot read has none."""
    from cfnlint.decode import decode

    template, _ = decode(str(file))
    resources = template.get("Resources") if isinstance(template, dict) else None
    if not isinstance(resources, dict):
        return {}
    found: dict[str, Span] = {}
    for key, value in resources.items():
        start = getattr(key, "start_mark", None) or getattr(value, "start_mark", None)
        end = getattr(value, "end_mark", None)
        if start is not None and end is not None:
            found[str(key)] = (start.line + 1, end.line + 1)
    # A block's end mark is where the next one starts: each span stops before the next.
    ordered = sorted(found.items(), key=lambda kv: kv[1])
    for (name, (lo, hi)), (_, (next_lo, _)) in itertools.pairwise(ordered):
        found[name] = (lo, max(lo, min(hi, next_lo - 1)))
    return found
