"""Report formats: text for people, JSON for programs, SARIF 2.1.0 for code scanning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from donjon.scan import (
    RULES,
    FormatError,
    ScanReport,
    render_json,
    render_sarif,
    render_text,
    renderer_for,
    scan_path,
    write_baseline,
)
from donjon.scan.format import FORMATS

#: The OASIS SARIF 2.1.0 schema, as shipped in the npm package
#: @microsoft/sarif-multitool-linux 5.7.0 (MIT licence): no PyPI package ships it.
SARIF_SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"

CODE = """
import os


def handler(event, context):
    os.system("echo " + event["name"])
    return {}
"""


@pytest.fixture
def report(tmp_path: Path) -> ScanReport:
    root = tmp_path / "bundle dir"
    root.mkdir()
    (root / "main.py").write_text(CODE)
    (root / "donjon.yaml").write_text("name: x\nhandler: main.handler\n")
    (root / "extra.py").write_text('import hashlib\nDIGEST = hashlib.md5(b"x")\n')
    return scan_path(root)


def _sarif(report: ScanReport) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(render_sarif(report))
    return doc


def test_sarif_validates_against_the_sarif_2_1_0_schema(report: ScanReport) -> None:
    """The output is valid SARIF 2.1.0 (the official JSON schema, draft 2020-12)."""
    schema = json.loads(SARIF_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    doc = _sarif(report)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert errors == [], [f"{list(e.path)}: {e.message}" for e in errors]
    doc["runs"][0]["results"][0]["level"] = "fatal"  # the schema does catch a bad value
    assert not validator.is_valid(doc)


def test_sarif_carries_rules_locations_and_code_flows(report: ScanReport) -> None:
    """Rules with CWE tags and security-severity; results relative to SRCROOT; taint flows."""
    run = _sarif(report)["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(RULES)
    injection = rules[list(RULES).index("DJ-PY-001")]
    assert "external/cwe/cwe-78" in injection["properties"]["tags"]
    assert injection["properties"]["security-severity"] == "8.0"
    [result] = [r for r in run["results"] if r["ruleId"] == "DJ-PY-001"]
    assert result["level"] == "error"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "main.py", "uriBaseId": "SRCROOT"}
    assert location["region"]["startLine"] == 6
    flow = result["codeFlows"][0]["threadFlows"][0]["locations"]
    assert [s["location"]["physicalLocation"]["region"]["startLine"] for s in flow] == [5, 6]
    assert run["originalUriBaseIds"]["SRCROOT"]["uri"].endswith("/bundle%20dir/")
    assert result["partialFingerprints"]["donjonFingerprint/v1"]


def test_sarif_marks_baseline_findings_as_suppressed(report: ScanReport, tmp_path: Path) -> None:
    """Accepted findings stay visible to code scanning, as suppressed results."""
    baseline = tmp_path / "b.json"
    write_baseline(report.findings, baseline)
    accepted = scan_path(report.root, baseline=baseline)
    results = _sarif(accepted)["runs"][0]["results"]
    assert results and all(r["suppressions"][0]["kind"] == "external" for r in results)


def test_json_report_shape(report: ScanReport) -> None:
    """Stable keys, lower-case grades, the taint path and a summary."""
    doc = json.loads(render_json(report))
    assert doc["summary"]["findings"] == len(report.findings)
    assert doc["summary"]["by_severity"]["high"] >= 1
    finding = next(f for f in doc["findings"] if f["rule_id"] == "DJ-PY-001")
    assert finding["severity"] == "high" and finding["confidence"] == "high"
    assert finding["cwe"] == "CWE-78" and finding["category"] == "SAS-1"
    assert [s["line"] for s in finding["taint_path"]] == [5, 6]
    assert finding["fix"].startswith("Pass an argv list")


def test_text_report_groups_by_file_with_fixes(report: ScanReport) -> None:
    """Each file once, its findings under it, each with a fix line."""
    text = render_text(report)
    lines = text.splitlines()
    assert lines.count("main.py") == 1 and lines.count("donjon.yaml") == 1
    assert lines.index("donjon.yaml") < lines.index("extra.py") < lines.index("main.py")
    assert text.count("fix: ") == len(report.findings)
    assert "DJ-PY-001 command-injection (CWE-78, SAS-1)" in text
    assert "path:" in text


def test_unknown_format_is_an_error() -> None:
    """The CLI's --format goes through renderer_for: each name is its renderer's own."""
    assert FORMATS == ("text", "json", "sarif")
    assert all(renderer_for(name).name == name for name in FORMATS)
    assert renderer_for("sarif").name == "sarif"
    with pytest.raises(FormatError, match="unknown format 'xml'"):
        renderer_for("xml")


def test_a_secret_on_a_code_findings_line_is_masked_in_every_format(tmp_path: Path) -> None:
    """A secret the secrets rules found never appears in another rule's snippet or path."""
    secret = "Hq3rVt8WnC6yJd1Lp5Ze"
    (tmp_path / "handler.py").write_text(
        "import jwt, logging, os\n\n"
        "def handler(event, context):\n"
        f'    token = jwt.encode({{"a": 1}}, "{secret}", algorithm="HS256")\n'
        f'    logging.info("key %s, %s", os.environ["API_SECRET"], "{secret}")\n'
        f'    return {{"s": os.environ["API_SECRET"], "k": "{secret}"[:2]}}\n'
    )
    report = scan_path(tmp_path)
    rules = {f.rule_id for f in report.findings}
    assert {"DJ-SEC-006", "DJ-PY-015", "DJ-PY-016"} <= rules
    for render in (render_text, render_json, render_sarif):
        assert secret not in render(report)
