"""The rule corpus: for every rule, code it must catch and code it must not.

Each ``corpus/<rule id>/positive`` and ``negative`` directory is scanned like a bundle.
Expected findings are marked where they occur, with a trailing ``# expect: RULE`` or
``# expect: RULE@confidence`` comment, or listed in an ``EXPECTED`` file (for files that
cannot hold comments) as ``path:line RULE[@confidence]``. Any other finding is a false
alarm; any missing one a miss. A finding counts once per file, line and rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from donjon.scan import RULES, AdvisoryDB, Confidence, scan_path

CORPUS = Path(__file__).parent / "corpus"
#: Cases waiting for the template loaders (issue 17): not scanned, and their rules are
#: not yet asked for a corpus here.
PENDING = Path(__file__).parent / "corpus_pending"
_MARK = re.compile(r"#\s*expect:\s*((?:DJ-[A-Z]+-\d+(?:@\w+)?[\s,]*)+)")
_ITEM = re.compile(r"(DJ-[A-Z]+-\d+)(?:@(\w+))?")

Key = tuple[str, int, str]  # (path from the corpus root, line, rule id)


@dataclass
class Tally:
    expected: dict[Key, Confidence | None]
    actual: dict[Key, Confidence]

    @property
    def true_positives(self) -> set[Key]:
        return {
            k
            for k, conf in self.expected.items()
            if k in self.actual and (conf is None or self.actual[k] == conf)
        }

    @property
    def false_positives(self) -> set[Key]:
        return set(self.actual) - self.true_positives

    @property
    def misses(self) -> set[Key]:
        return set(self.expected) - self.true_positives


def _expected(case: Path) -> dict[Key, Confidence | None]:
    found: dict[Key, Confidence | None] = {}
    prefix = case.relative_to(CORPUS).as_posix()
    for file in sorted(p for p in case.rglob("*") if p.is_file()):
        rel = f"{prefix}/{file.relative_to(case).as_posix()}"
        text = file.read_text(encoding="utf-8", errors="replace")
        if file.name == "EXPECTED":
            here = file.parent.relative_to(CORPUS).as_posix()
            for line in text.splitlines():
                if line.strip():
                    where, items = line.split(maxsplit=1)
                    path, at = where.rsplit(":", 1)
                    for rule_id, conf in _ITEM.findall(items):
                        found[(f"{here}/{path}", int(at), rule_id)] = (
                            Confidence.parse(conf) if conf else None
                        )
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            mark = _MARK.search(line)
            if mark:
                for rule_id, conf in _ITEM.findall(mark.group(1)):
                    found[(rel, number, rule_id)] = Confidence.parse(conf) if conf else None
    return found


def _actual(case: Path, advisories: AdvisoryDB) -> dict[Key, Confidence]:
    prefix = case.relative_to(CORPUS).as_posix()
    report = scan_path(case, advisories=advisories)
    found: dict[Key, Confidence] = {}
    for f in report.findings:
        key = (f"{prefix}/{f.location.path}", f.location.line, f.rule_id)
        found[key] = max(found.get(key, f.confidence), f.confidence)
    return found


def _cases() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*/*") if p.is_dir())


@pytest.fixture(scope="module")
def tally(advisory_db: AdvisoryDB) -> Tally:
    expected: dict[Key, Confidence | None] = {}
    actual: dict[Key, Confidence] = {}
    for case in _cases():
        expected.update(_expected(case))
        actual.update(_actual(case, advisory_db))
    return Tally(expected, actual)


def _pending() -> set[str]:
    """Rules whose corpus waits in corpus_pending/ (and not yet in corpus/)."""
    waiting = {p.name for p in PENDING.glob("*") if p.is_dir()} if PENDING.is_dir() else set()
    return {r for r in waiting if not (CORPUS / r).is_dir()}


def test_every_rule_has_positive_and_negative_cases() -> None:
    """Each catalog rule has a corpus directory with both kinds of case."""
    for rule_id in set(RULES) - _pending():
        assert (CORPUS / rule_id / "positive").is_dir(), rule_id
        assert (CORPUS / rule_id / "negative").is_dir(), rule_id
        marked = {k[2] for k in _expected(CORPUS / rule_id / "positive")}
        assert rule_id in marked, f"{rule_id}: no expected finding in its positive cases"
        assert not _expected(CORPUS / rule_id / "negative"), f"{rule_id}: negatives expect"


def test_precision_and_recall_are_perfect_on_the_corpus(
    tally: Tally, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every marked finding is found (recall) and nothing else is (precision)."""
    tp, fp, fn = len(tally.true_positives), len(tally.false_positives), len(tally.misses)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    with capsys.disabled():
        print(
            f"\ncorpus: {tp} true positives, {fp} false positives, {fn} misses; "
            f"precision {precision:.1%}, recall {recall:.1%}"
        )
    problems = [f"false alarm {k} ({tally.actual[k].label})" for k in sorted(tally.false_positives)]
    for k in sorted(tally.misses):
        want = tally.expected[k]
        problems.append(f"missed {k} (want {want.label if want else 'any confidence'})")
    assert not problems, "\n".join(problems)
    assert precision == 1.0
    assert recall == 1.0


def test_every_rule_is_exercised(tally: Tally) -> None:
    """Each rule is actually found somewhere in the corpus (not only marked)."""
    assert {k[2] for k in tally.true_positives} == set(RULES) - _pending()
