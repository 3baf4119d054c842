"""Terraform through `donjon scan`: the default scanners read .tf modules, a broken file
is a note of the report, and a finding on a Terraform property carries its file, line
and address (which SARIF renders as the logical location)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from donjon.scan.engine import scan_path
from donjon.scan.iac.catalog import formats
from donjon.scan.iac.model import App
from donjon.scan.iac.terraform import TerraformFormat
from donjon.scan.model import Confidence, Cwe, Finding, FindingKind, SasCategory, Severity
from donjon.scan.rule import Rule
from donjon.scan.scanners.iac import IacScanner

_PUBLIC_URL = Rule(
    "DJ-TEST-001",
    "test-public-url",
    FindingKind.IAC,
    Severity.HIGH,
    Cwe.INCORRECT_DEFAULT_PERMISSIONS,
    SasCategory.SAS_2,
    "A function URL without authentication (test rule).",
    "Set authorization_type = AWS_IAM.",
)


def _public_urls(app: App) -> Iterator[Finding]:
    for function in app.functions:
        for trigger in function.triggers:
            if trigger.auth.any(lambda v: v == "none"):
                yield _PUBLIC_URL.finding(
                    trigger.where.location(trigger.auth.line),
                    "open function URL",
                    confidence=Confidence.HIGH,
                )


def test_terraform_is_a_default_format() -> None:
    """The IaC scanner's formats include Terraform."""
    assert any(isinstance(f, TerraformFormat) for f in formats())


def test_broken_tf_file_is_a_report_note(tmp_path: Path) -> None:
    """`donjon scan` over a directory with malformed HCL reports a note, not an error."""
    (tmp_path / "main.tf").write_text('resource "aws_s3_bucket" "b" {\n  bucket = \n')
    report = scan_path(tmp_path)
    assert any(n.startswith("main.tf: not valid HCL") for n in report.notes)


def test_terraform_json_syntax_is_read(tmp_path: Path) -> None:
    """A module in Terraform's JSON syntax is checked as the same module in .tf files
    is: the open function URL is found at its JSON key's line, and nothing is a note."""
    (tmp_path / "main.tf.json").write_text(
        '{"resource": {"aws_lambda_function": {"api": {"function_name": "api"}}}}\n'
    )
    (tmp_path / "url.tf.json").write_text(
        '{"resource": {"aws_lambda_function_url": {"api": {\n'
        '  "function_name": "${aws_lambda_function.api.function_name}",\n'
        '  "authorization_type": "${var.auth}"\n'
        "}}}}\n"
    )
    (tmp_path / "terraform.tfvars.json").write_text('{"auth": "NONE"}\n')
    (tmp_path / "vars.tf").write_text('variable "auth" {}\n')
    scanner = IacScanner(template_formats=[TerraformFormat()], checks=[_public_urls])
    report = scan_path(tmp_path, scanners=[scanner])
    assert report.notes == ()
    (finding,) = report.findings
    assert (finding.location.path, finding.location.line) == ("url.tf.json", 3)


def test_finding_carries_file_line_and_address(tmp_path: Path) -> None:
    """A check over the Terraform model reports at the property's line, in the file the
    resource is written in, with the Terraform address as the location's resource."""
    (tmp_path / "fn.tf").write_text(
        'resource "aws_lambda_function" "api" {\n  function_name = "api"\n}\n'
    )
    (tmp_path / "url.tf").write_text(
        'resource "aws_lambda_function_url" "api" {\n'
        "  function_name      = aws_lambda_function.api.function_name\n"
        '  authorization_type = "NONE"\n'
        "}\n"
    )
    scanner = IacScanner(template_formats=[TerraformFormat()], checks=[_public_urls])
    report = scan_path(tmp_path, scanners=[scanner])
    (finding,) = report.findings
    assert (finding.location.path, finding.location.line) == ("url.tf", 3)
    assert finding.location.resource == "aws_lambda_function_url.api"
