"""The human format: findings grouped by file, each with its fix and its taint path.

What the scanned code chose (a file's name, a resource's, a message naming its
values, a quoted line) is one line each, escaped (`printable`): a name holding
newlines or escape sequences cannot add a line of its own to the report.
"""

from __future__ import annotations

from itertools import groupby

from donjon.printable import printable
from donjon.scan.format.interface import Renderer
from donjon.scan.model import Finding, ScanReport

__all__ = ["TextRenderer"]


def _finding(f: Finding) -> list[str]:
    where = (
        f"{f.location.line}:{f.location.column}" if f.location.column else (f"{f.location.line}")
    )
    lines = [
        f"  {where:<8} {f.severity.label.upper():<8} {f.confidence.label:<6} confidence  "
        f"{f.rule_id} {f.title} ({f.cwe.label}, {f.category.value})",
        f"           {printable(f.message)}",
    ]
    if f.location.resource:
        lines.insert(1, f"           resource: {printable(f.location.resource)}")
    if f.snippet:
        lines.append(f"           > {printable(f.snippet)}")
    if f.taint_path:
        lines.append("           path:")
        if all(s.location.path == f.location.path for s in f.taint_path):
            lines += [
                f"             {s.location.line:>4}  {printable(s.description)}"
                for s in f.taint_path
            ]
        else:  # a path through several files of the bundle: each step says its file
            lines += [
                f"             {printable(s.location)}  {printable(s.description)}"
                for s in f.taint_path
            ]
    lines.append(f"           fix: {f.fix}")
    return lines


def _summary(report: ScanReport) -> str:
    counts = ", ".join(f"{n} {s.label}" for s, n in report.counts().items() if n)
    text = f"{len(report.findings)} finding(s)" + (f": {counts}" if counts else "")
    if report.suppressed:
        text += f"; {len(report.suppressed)} accepted by the baseline"
    return text


class TextRenderer(Renderer):
    """Readable in a terminal or a deploy log."""

    name = "text"

    def render(self, report: ScanReport) -> str:
        out = [
            f"donjon scan {report.root}",
            f"  {report.files_scanned} files, {report.lines_scanned} lines, "
            f"{report.advisories_loaded} advisories, {report.duration_s:.2f} s",
        ]
        for path, group in groupby(report.findings, key=lambda f: f.location.path):
            out += ["", printable(path)]
            for f in group:
                out += _finding(f)
        out += ["", _summary(report)]
        if report.notes:
            out += ["notes:"] + [f"  - {printable(n)}" for n in report.notes]
        return "\n".join(out) + "\n"
