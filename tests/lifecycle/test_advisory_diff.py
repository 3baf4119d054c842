"""The advisory watch's matching and diffing (lifecycle/advisory_diff.py), no node."""

from __future__ import annotations

from packaging.version import Version

from advisory_support import osv
from donjon.lifecycle.advisory_diff import diff, match
from donjon.lifecycle.components import Component
from donjon.scan.deps.advisories import AdvisoryDB
from donjon.store import VersionFinding


def _found(advisory: str, *, version: int = 1, aliases: tuple[str, ...] = ()) -> VersionFinding:
    return VersionFinding("fn", version, "pkg", "1.0", advisory, aliases)


def test_match_names_function_version_package_advisory_and_fix() -> None:
    """A vendored package an advisory covers gives a finding with its id, aliases and fix."""
    db = AdvisoryDB([osv("GHSA-1", "pkg", fixed="1.5", aliases=("CVE-1",))])
    (found,) = match(db, {("fn", 3): [Component("pkg", Version("1.0"))]})
    assert (found.function, found.version, found.package, found.installed) == (
        "fn",
        3,
        "pkg",
        "1.0",
    )
    assert (found.advisory, found.aliases, found.fixed, found.severity) == (
        "GHSA-1",
        ("CVE-1",),
        ("1.5",),
        "high",
    )


def test_match_skips_fixed_versions_and_other_packages() -> None:
    """A version at or past the fix, and a package no advisory names, give nothing."""
    db = AdvisoryDB([osv("GHSA-1", "pkg", fixed="1.0")])
    parts = [Component("pkg", Version("1.0")), Component("other", Version("0.1"))]
    assert match(db, {("fn", 1): parts}) == []


def test_match_gives_one_finding_for_records_that_alias_each_other() -> None:
    """A PYSEC record and the GHSA naming it are one weakness: one finding, first by id."""
    db = AdvisoryDB(
        [osv("PYSEC-9", "pkg", aliases=("GHSA-9",)), osv("GHSA-9", "pkg", aliases=("PYSEC-9",))]
    )
    (found,) = match(db, {("fn", 1): [Component("pkg", Version("1.0"))]})
    assert found.advisory == "GHSA-9"


def test_diff_splits_new_cleared_and_unchanged() -> None:
    """What the data adds is new, what it dropped is cleared, what stays is unchanged."""
    kept, dropped, added = _found("A-1"), _found("A-2"), _found("A-3")
    change = diff([kept, dropped], [kept, added])
    assert change.new == (added,)
    assert change.cleared == (dropped,)
    assert change.unchanged == (kept,)


def test_diff_of_a_version_the_data_no_longer_covers_clears_all_its_findings() -> None:
    """Nothing found for a known version: each of its findings is cleared."""
    known = [_found("A-1"), _found("A-2")]
    change = diff(known, [])
    assert set(change.cleared) == set(known)
    assert change.new == () and change.unchanged == ()


def test_diff_treats_an_alias_of_a_known_finding_as_the_same() -> None:
    """New data naming a known weakness by another id (its alias) raises nothing new."""
    known = _found("PYSEC-1", aliases=("CVE-1",))
    renamed = _found("GHSA-1", aliases=("CVE-1", "PYSEC-1"))
    change = diff([known], [renamed])
    assert change.new == () and change.cleared == ()
    assert change.unchanged == (known,)


def test_diff_keeps_versions_apart() -> None:
    """The same advisory on another version of the function is a new finding."""
    on_one, on_two = _found("A-1", version=1), _found("A-1", version=2)
    change = diff([on_one], [on_one, on_two])
    assert change.new == (on_two,)
