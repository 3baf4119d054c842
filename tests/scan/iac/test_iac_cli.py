"""`donjon scan PATH` over a repository holding code, a SAM template and a Terraform
module: one run, one report, one exit code; SARIF results name the resource and the
line of the offending property."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from donjon.cli.scan_cmd import scan_command

SARIF_SCHEMA = Path(__file__).parent.parent / "data" / "sarif-schema-2.1.0.json"

SAM = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  ExtraPolicy:
    Type: String
    Default: arn:aws:iam::aws:policy/AdministratorAccess
Resources:
  Orders:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: app.handler
      Policies:
        - !Ref ExtraPolicy
"""

TERRAFORM = """\
resource "aws_lambda_function" "report" {
  function_name = "report"
  role          = aws_iam_role.report.arn
  runtime       = "python3.12"
  handler       = "app.handler"
}

resource "aws_iam_role" "report" {
  name               = "report"
  assume_role_policy = "{}"
}

resource "aws_lambda_function_url" "report" {
  function_name      = aws_lambda_function.report.function_name
  authorization_type = "NONE"
}
"""

CODE = "def handler(event, context):\n    return {'ok': True}\n"


def _repository(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "infra").mkdir(parents=True)
    (root / "tf").mkdir()
    (root / "app.py").write_text(CODE)
    (root / "infra" / "template.yaml").write_text(SAM)
    (root / "tf" / "main.tf").write_text(TERRAFORM)
    return root


def _results(output: str) -> list[dict[str, Any]]:
    doc = json.loads(output)
    jsonschema.Draft202012Validator(json.loads(SARIF_SCHEMA.read_text())).validate(doc)
    results: list[dict[str, Any]] = doc["runs"][0]["results"]
    return results


def _where(result: dict[str, Any]) -> tuple[str, str, int, str]:
    (location,) = result["locations"]
    physical = location["physicalLocation"]
    (logical,) = location["logicalLocations"]
    return (
        str(result["ruleId"]),
        physical["artifactLocation"]["uri"],
        physical["region"]["startLine"],
        logical["fullyQualifiedName"],
    )


def test_one_run_reports_templates_of_both_formats_in_sarif(tmp_path: Path) -> None:
    """An admin grant through a parameter default (SAM) and a public function URL
    (Terraform) are both in one valid SARIF log, each at its property's line and with
    the logical id or address; the run fails the default gate."""
    runner = CliRunner(env={"DONJON_DATA_DIR": str(tmp_path / "data")})
    result = runner.invoke(scan_command, [str(_repository(tmp_path)), "--format", "sarif"])
    assert result.exit_code == 1, result.output
    found = {_where(r) for r in _results(result.stdout)}
    assert ("DJ-IAC-001", "infra/template.yaml", 14, "Orders") in found
    assert ("DJ-IAC-010", "tf/main.tf", 15, "aws_lambda_function_url.report") in found


def test_the_same_run_passes_once_the_templates_are_fixed(tmp_path: Path) -> None:
    """With the grant named and the URL behind IAM, the same repository passes the gate:
    the exit code follows the templates' findings."""
    root = _repository(tmp_path)
    sam = SAM.replace("arn:aws:iam::aws:policy/AdministratorAccess", "AWSLambdaBasicExecutionRole")
    (root / "infra" / "template.yaml").write_text(sam)
    tf = TERRAFORM.replace('authorization_type = "NONE"', 'authorization_type = "AWS_IAM"')
    (root / "tf" / "main.tf").write_text(tf)
    runner = CliRunner(env={"DONJON_DATA_DIR": str(tmp_path / "data")})
    result = runner.invoke(scan_command, [str(root), "--format", "sarif"])
    blocking = [
        r
        for r in _results(result.stdout)
        if r.get("level") == "error" and str(r["ruleId"]).startswith("DJ-IAC-0")
    ]
    assert result.exit_code == 0, (result.output, blocking)


@pytest.mark.slow
def test_a_scan_without_templates_loads_no_template_parser(tmp_path: Path) -> None:
    """Scanning code alone imports neither cfn-lint nor python-hcl2 (their import is most
    of a scan's start-up); they are loaded once a candidate template exists."""
    (tmp_path / "app.py").write_text(CODE)
    probe = (
        "import sys; from pathlib import Path; from donjon.scan import scan_path; "
        f"scan_path(Path({str(tmp_path)!r})); "
        "print(sorted(m for m in ('cfnlint', 'hcl2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    (tmp_path / "serverless.yml").write_text("service: s\nprovider: {name: aws}\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['cfnlint']"
