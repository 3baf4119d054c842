"""A template's findings in the scan report: the resource's logical id and the line
of the offending property, through the real engine and JSON report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from donjon.scan import render_json, scan_path
from donjon.scan.iac.model import App
from donjon.scan.model import Confidence, Cwe, Finding, FindingKind, SasCategory, Severity
from donjon.scan.rule import Rule
from donjon.scan.scanners.iac import IacScanner

# A stand-in rule for this test only: the loader is tested, not a rule of the catalog.
_ANY_ACTION = Rule(
    "DJ-IAC-900",
    "any-action",
    FindingKind.IAC,
    Severity.HIGH,
    Cwe.LEAST_PRIVILEGE_VIOLATION,
    SasCategory.SAS_4,
    "A statement allows every action.",
    "Name the actions.",
)


def _any_action(app: App) -> Iterator[Finding]:
    for function in app.functions:
        for policy in function.policies:
            for statement in policy.statements:
                if "*" in statement.actions:
                    yield _ANY_ACTION.finding(
                        function.where.location(statement.line),
                        f"{policy.name} allows every action",
                        confidence=Confidence.HIGH,
                    )


TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  Extra:
    Type: String
    Default: arn:aws:iam::aws:policy/AdministratorAccess
Resources:
  Api:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Policies:
        - !Ref Extra
"""


def test_findings_carry_the_logical_id_and_the_property_line(tmp_path: Path) -> None:
    """A grant through a parameter's default is reported at the line using the
    parameter, on the function's logical id."""
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "template.yaml").write_text(TEMPLATE)
    report = scan_path(tmp_path, scanners=[IacScanner(checks=[_any_action])])
    found = json.loads(render_json(report))["findings"]
    assert [(f["rule_id"], f["path"], f["line"], f["resource"]) for f in found] == [
        ("DJ-IAC-900", "infra/template.yaml", 13, "Api")
    ]
