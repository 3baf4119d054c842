"""Donjon, Checkov and cfn-lint on the IaC corpus: recall, false alarms, time (issue 17).

Every project of the corpus (tests/scan/corpus/DJ-IAC-*/positive and negative, and
tests/scan/corpus_pending/ while it exists, as its own group) is scanned by
`donjon scan --format json`, `checkov -d DIR -o json --quiet --skip-download` (frameworks
cloudformation, serverless, terraform) and `cfn-lint --format json` (given the project's
CloudFormation/SAM templates; projects without one are not counted for it), one command
at a time. Checkov and cfn-lint come from bench/.venv-iac (made by bench/iac_tools.py when
missing). Their checks are matched to Donjon's rules through bench/iac_compare_map.toml;
bench/iac_results.py says when a report finds an expected finding.

Printed per group and tool: recall over the expected findings (and over those of the
rules the tool has a check for), false alarms (mapped reports on the negative projects),
unmatched mapped reports on the positive ones, reports of unmapped checks, wall and CPU
seconds per project; each tool's start-up (`--version`, and a scan of an empty directory);
recall per rule; the Donjon rules without a Checkov equivalent; a verdict line.

    .venv/bin/python bench/iac_compare.py [--root DIR ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import iac_tools
from iac_corpus import Project, projects
from iac_results import (
    TOOLS,
    Hit,
    Mapping,
    Score,
    cfn_lint_hits,
    checkov_hits,
    donjon_hits,
    load_mapping,
    score,
)

REPO = Path(__file__).resolve().parent.parent
MAP = Path(__file__).resolve().parent / "iac_compare_map.toml"
CORPUS = REPO / "tests" / "scan" / "corpus"
PENDING = REPO / "tests" / "scan" / "corpus_pending"


def run_tool(tool: str, project: Project, venv: Path) -> tuple[list[Hit], iac_tools.Timed] | None:
    """The tool's hits on `project` and what the run cost (None: nothing for it there)."""
    if tool == "donjon":
        done = iac_tools.timed([iac_tools.donjon(), "scan", "--format", "json", str(project.path)])
        return donjon_hits(done.stdout), done
    if tool == "checkov":
        argv = [iac_tools.checkov(venv), "-d", ".", *iac_tools.CHECKOV_FLAGS]
        done = iac_tools.timed([*argv, *iac_tools.FRAMEWORKS], cwd=project.path)
        return checkov_hits(done.stdout), done
    templates = project.templates()
    if not templates:
        return None
    argv = [iac_tools.cfn_lint(venv), "--format", "json", "--", *map(str, templates)]
    done = iac_tools.timed(argv)
    return cfn_lint_hits(done.stdout, project), done


def start_up(venv: Path) -> dict[str, tuple[iac_tools.Timed, iac_tools.Timed]]:
    """Each tool's `--version` and its scan of an empty directory."""
    with tempfile.TemporaryDirectory() as empty:
        runs = {
            "donjon": [iac_tools.donjon(), "scan", "--format", "json", empty],
            "checkov": [
                iac_tools.checkov(venv),
                "-d",
                empty,
                *iac_tools.CHECKOV_FLAGS,
                *iac_tools.FRAMEWORKS,
            ],
            "cfn-lint": [iac_tools.cfn_lint(venv), "--format", "json", "--", empty],
        }
        versions = {
            "donjon": [iac_tools.donjon(), "--version"],
            "checkov": [iac_tools.checkov(venv), "--version"],
            "cfn-lint": [iac_tools.cfn_lint(venv), "--version"],
        }
        return {t: (iac_tools.timed(versions[t]), iac_tools.timed(runs[t])) for t in TOOLS}


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f}%" if whole else "   n/a"


def table(group: str, scores: dict[str, Score], items: list[Project], mapping: Mapping) -> None:
    expected = [
        (f"{p.name}/{f}", line, rule)
        for p in items
        if not p.negative
        for f, line, rule in p.expected
    ]
    negatives = sum(p.negative for p in items)
    print(f"\n== {group}: {len(items)} projects ({negatives} negative), {len(expected)} expected")
    head = f"{'tool':9} {'recall':>14} {'in its rules':>14} {'FP on neg':>9} {'unmatched':>9}"
    print(f"{head} {'other':>6} {'wall s/proj':>11} {'CPU s/proj':>10} {'projects':>8}")
    for tool in TOOLS:
        s = scores[tool]
        covered = mapping.covered(tool) if tool != "donjon" else {k[2] for k in expected}
        mine = [k for k in expected if k[2] in covered]
        inside = len([k for k in mine if k in s.found_keys])
        recall = f"{len(s.found_keys)}/{len(expected)} {_pct(len(s.found_keys), len(expected))}"
        own = f"{inside}/{len(mine)} {_pct(inside, len(mine))}"
        n = max(s.projects, 1)
        print(
            f"{tool:9} {recall:>14} {own:>14} {s.false_alarms:>9} {s.extras:>9} {s.others:>6}"
            f" {s.wall / n:>11.2f} {s.cpu / n:>10.2f} {s.projects:>8}"
        )
    rules = sorted({k[2] for k in expected})
    print(
        "recall per rule: "
        + "  ".join(
            f"{r.removeprefix('DJ-')} "
            + "/".join(str(len({k for k in scores[t].found_keys if k[2] == r})) for t in TOOLS)
            + f" of {sum(k[2] == r for k in expected)}"
            for r in rules
        )
    )
    print("(per rule: Donjon/Checkov/cfn-lint found, of expected)")
    for tool in TOOLS:
        if scores[tool].alarm_checks:
            alarms = ", ".join(f"{c} {n}" for c, n in scores[tool].alarm_checks.most_common())
            print(f"false alarms of {tool} by check: {alarms}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        type=Path,
        action="append",
        default=[],
        help="a directory of <rule>/positive|negative projects "
        "(default: the corpus, and corpus_pending/ while it exists)",
    )
    args = parser.parse_args()
    roots = [(r.name, r) for r in args.root] or [("corpus", CORPUS)]
    if not args.root and PENDING.is_dir():
        roots.append(("pending", PENDING))
    venv = iac_tools.ensure_venv()
    mapping = load_mapping(MAP)
    load = os.getloadavg()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        "checkov",
        iac_tools.version(iac_tools.checkov(venv)),
        "|",
        iac_tools.version(iac_tools.cfn_lint(venv)),
    )
    starts = start_up(venv)
    for tool, (v, e) in starts.items():
        print(
            f"start-up {tool:9} --version {v.wall:.2f} s ({v.cpu:.2f} CPU), "
            f"empty dir {e.wall:.2f} s ({e.cpu:.2f} CPU)"
        )
    totals: dict[str, dict[str, Score]] = {}
    all_projects = projects(roots)
    for group in dict.fromkeys(p.group for p in all_projects):
        items = [p for p in all_projects if p.group == group]
        scores = {tool: Score() for tool in TOOLS}
        for project in items:
            print(f"  {group} {project.name}", file=sys.stderr)
            for tool in TOOLS:
                ran = run_tool(tool, project, venv)
                if ran is None:
                    continue
                hits, done = ran
                result = score(project, tool, hits, mapping)
                result.wall, result.cpu = done.wall, done.cpu
                scores[tool].add(result)
        table(group, scores, items, mapping)
        totals[group] = scores
    none = sorted(mapping.no_checkov)
    print("\nDonjon rules without a Checkov equivalent:")
    for rule in none:
        print(f"  {rule}: {mapping.no_checkov[rule]}")
    main_group = totals.get(roots[0][0])
    if main_group:
        d, c = main_group["donjon"], main_group["checkov"]
        n = max(d.projects, 1)
        up = starts["checkov"][0]
        print(
            f"\nverdict ({roots[0][0]}): recall Donjon {len(d.found_keys)} vs Checkov "
            f"{len(c.found_keys)} expected findings; false alarms on negatives Donjon "
            f"{d.false_alarms} vs Checkov {c.false_alarms}; Donjon {d.wall / n:.2f} s wall "
            f"({d.cpu / n:.2f} CPU) per project vs Checkov's start-up (--version) "
            f"{up.wall:.2f} s ({up.cpu:.2f} CPU)"
        )


if __name__ == "__main__":
    main()
