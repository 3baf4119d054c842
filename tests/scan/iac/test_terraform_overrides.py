"""Terraform's override files (``override.tf``, ``*_override.tf`` and their ``.tf.json``
forms) merge into the blocks they name, as Terraform merges them: what the gate judges
is what Terraform would apply, not the block before its override."""

from __future__ import annotations

from pathlib import Path

from donjon.scan.iac.interface import Loaded
from donjon.scan.iac.model import Function
from donjon.scan.iac.terraform import TerraformFormat
from donjon.scan.project import discover

MAIN = """resource "aws_lambda_function" "api" {
  function_name = "api"
  role          = "arn:aws:iam::123456789012:role/x"
  runtime       = local.runtime
  handler       = "app.handler"
  tracing_config {
    mode = "Active"
  }
  environment {
    variables = { STAGE = "prod" }
  }
}

resource "aws_lambda_function_url" "api" {
  function_name      = aws_lambda_function.api.function_name
  authorization_type = "AWS_IAM"
}

locals {
  runtime = "python3.12"
  other   = "x"
}
"""


def _loaded(tmp_path: Path, files: dict[str, str]) -> Loaded:
    for name, text in {"main.tf": MAIN, **files}.items():
        (tmp_path / name).write_text(text)
    return TerraformFormat().load(discover(tmp_path))


def _fn(loaded: Loaded) -> Function:
    (app,) = loaded.apps
    (fn,) = app.functions
    return fn


def test_override_argument_replaces_the_original(tmp_path: Path) -> None:
    """authorization_type set to NONE in main_override.tf.json is what the URL has; the
    finding stays in main.tf at the argument Terraform replaces, and a note names the
    override file."""
    override = '{"resource": {"aws_lambda_function_url": {"api": {"authorization_type": "NONE"}}}}'
    loaded = _loaded(tmp_path, {"main_override.tf.json": override})
    (trigger,) = _fn(loaded).triggers
    assert (trigger.auth.one, trigger.auth.line, trigger.where.path) == ("none", 16, "main.tf")
    assert loaded.notes == (
        "main_override.tf.json:1: overrides resource aws_lambda_function_url.api of main.tf"
        " (authorization_type), as Terraform merges it; findings on it are reported there",
    )


def test_override_nested_blocks_replace_every_block_of_their_type(tmp_path: Path) -> None:
    """A tracing_config block in override.tf replaces the original's; the environment
    block it does not name stays."""
    override = 'resource "aws_lambda_function" "api" {\n  tracing_config {}\n}\n'
    fn = _fn(_loaded(tmp_path, {"override.tf": override}))
    assert fn.tracing.known == ()
    assert [(e.name, e.value.one) for e in fn.environment] == [("STAGE", "prod")]


def test_locals_are_overridden_one_by_one_in_name_order(tmp_path: Path) -> None:
    """A local is replaced by name, the others kept; of two override files, the later by
    name applies last."""
    fn = _fn(
        _loaded(
            tmp_path,
            {
                "a_override.tf": 'locals {\n  runtime = "python3.6"\n}\n',
                "b_override.tf": 'locals {\n  runtime = "python3.7"\n}\n',
            },
        )
    )
    assert fn.runtime.one == "python3.7"


def test_override_without_a_base_is_still_judged(tmp_path: Path) -> None:
    """An override block naming nothing (Terraform refuses the module) is read as a block
    of its own, never dropped."""
    override = (
        'resource "aws_lambda_function_url" "other" {\n'
        "  function_name      = aws_lambda_function.api.function_name\n"
        '  authorization_type = "NONE"\n}\n'
    )
    fn = _fn(_loaded(tmp_path, {"override.tf": override}))
    assert {(t.where.path, t.auth.one) for t in fn.triggers} == {
        ("main.tf", "aws_iam"),
        ("override.tf", "none"),
    }
