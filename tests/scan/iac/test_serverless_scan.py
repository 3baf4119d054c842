"""serverless.yml through `donjon scan`: the default scan reads it beside the code, a
broken one is a report note, and SARIF results carry the function key as the logical
location and the offending property's line."""

from __future__ import annotations

import json
from pathlib import Path

from donjon.scan import render_sarif
from donjon.scan.engine import scan_path

SERVICE = """\
service: orders
provider:
  name: aws
  runtime: python3.13
  iam:
    role:
      statements:
        - Effect: Allow
          Action: "*"
          Resource: "*"
functions:
  api:
    handler: app.handler
    events:
      - httpApi: GET /orders
"""


def test_scan_reports_serverless_findings_with_key_and_line(tmp_path: Path) -> None:
    """An admin statement (line 8) and a public HTTP API route (line 15) are reported on
    the function `api`, in the report and in its SARIF rendering."""
    (tmp_path / "serverless.yml").write_text(SERVICE)
    report = scan_path(tmp_path)
    found = {(f.rule_id, f.location.line, f.location.resource) for f in report.findings}
    assert ("DJ-IAC-001", 8, "api") in found
    assert ("DJ-IAC-010", 15, "api") in found
    sarif = json.loads(render_sarif(report))
    results = sarif["runs"][0]["results"]
    admin = next(r for r in results if r["ruleId"] == "DJ-IAC-001")
    location = admin["locations"][0]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == "serverless.yml"
    assert location["physicalLocation"]["region"]["startLine"] == 8
    assert location["logicalLocations"][0]["fullyQualifiedName"] == "api"


def test_broken_service_file_is_a_report_note(tmp_path: Path) -> None:
    """A serverless.yml that does not decode is a note of the scan, not an error."""
    (tmp_path / "serverless.yml").write_text("service: s\nprovider: [\n")
    report = scan_path(tmp_path)
    assert any(n.startswith("serverless.yml: not a Serverless file") for n in report.notes)
