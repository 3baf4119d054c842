"""The DJ-IAC rules other than IAM in the catalog, and through the scanner into a report."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from donjon.scan import RULES, scan_path
from donjon.scan.format import render_sarif
from donjon.scan.iac import config_rules, exposure_rules, identity_rules, ops_rules
from donjon.scan.iac.catalog import CHECKS, IAC_RULES
from donjon.scan.iac.interface import Loaded, TemplateFormat
from donjon.scan.iac.model import App, Val
from donjon.scan.iac.runtimes import runtime_table
from donjon.scan.model import FindingKind
from donjon.scan.project import Project
from donjon.scan.scanners.iac import IacScanner
from iac_support import app, bucket, function, route

MODULES = (exposure_rules, config_rules, ops_rules, identity_rules)


def test_rules_have_their_id_ranges_and_join_the_catalog() -> None:
    """Exposure rules are DJ-IAC-010..019, configuration 020..049; every one is in RULES."""
    for module in MODULES:
        for rule in module.RULES:
            number = int(rule.id.rsplit("-", 1)[1])
            low, high = (10, 19) if module is exposure_rules else (20, 49)
            assert low <= number <= high, rule.id
            assert rule.kind is FindingKind.IAC
            assert rule in IAC_RULES and RULES[rule.id] is rule
            assert rule.description and rule.fix
        assert all(check in CHECKS for check in module.CHECKS)


class _Given(TemplateFormat):
    """Stands for a loader (they live on other branches until merged): returns one app."""

    name = "given"

    def __init__(self, built: App) -> None:
        self.built = built

    def load(self, project: Project) -> Loaded:
        return Loaded(apps=(self.built,))


def test_findings_reach_the_sarif_report_with_the_resource(tmp_path: Path) -> None:
    """A public route and a public bucket, through IacScanner and scan_path, are SARIF
    results naming the resource's logical id at the property's line."""
    (tmp_path / "template.yaml").write_text("Resources: {}\n")
    built = app(
        functions=(function("Orders", triggers=(route(auth=Val.of("none", 22)),)),),
        buckets=(
            bucket("Site", acl=Val.of("public-read", 51), public_access_blocked=Val.of(False, 52)),
        ),
    )
    report = scan_path(tmp_path, scanners=[IacScanner([_Given(built)])])
    found = {(f.rule_id, f.location.line, f.location.resource) for f in report.findings}
    assert ("DJ-IAC-010", 22, "Fn") in found
    assert ("DJ-IAC-011", 51, "Site") in found
    assert ("DJ-IAC-027", 10, "Orders") in found
    sarif = json.loads(render_sarif(report))
    results = sarif["runs"][0]["results"]
    public_acl = next(r for r in results if r["ruleId"] == "DJ-IAC-011")
    location = public_acl["locations"][0]
    assert location["physicalLocation"]["region"]["startLine"] == 51
    assert location["logicalLocations"][0]["fullyQualifiedName"] == "Site"


def test_an_old_runtime_table_is_a_scan_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past STALE_DAYS after the table's date, a scan that read functions says so in its
    notes (the clock is moved: the only stand-in here); a fresh table says nothing."""
    (tmp_path / "template.yaml").write_text("Resources: {}\n")
    built = app(functions=(function(),))
    table = runtime_table()
    monkeypatch.setattr(config_rules, "scan_day", lambda: table.as_of)
    fresh = scan_path(tmp_path, scanners=[IacScanner([_Given(built)])])
    assert not [n for n in fresh.notes if "runtime support dates" in n]
    later = date.fromordinal(table.as_of.toordinal() + config_rules.STALE_DAYS + 1)
    monkeypatch.setattr(config_rules, "scan_day", lambda: later)
    stale = scan_path(tmp_path, scanners=[IacScanner([_Given(built)])])
    assert [n for n in stale.notes if "runtime support dates" in n] == [
        f"IaC runtime support dates are as of {table.as_of} ({config_rules.STALE_DAYS + 1} "
        "days old): runtimes deprecated since are not reported; update donjon"
    ]
