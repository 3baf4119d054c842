"""A bundle whose infrastructure is written for OpenTofu (``main.tofu``, ``*.tofu.json``)
against a real node's deploy gate: OpenTofu applies those files, so the gate must refuse
what it refuses in ``.tf`` files, not pass them unread. Where a ``.tofu`` file stands in
for the ``.tf`` file of its name (a module written for both tools), OpenTofu applies the
one and Terraform the other: each is judged."""

from __future__ import annotations

import json
from collections.abc import Mapping

import httpx
import pytest

from gate_support import deploy_with, gate_problems
from harness import LiveNode

_MANIFEST = b"name: tofu\nhandler: main.handler\nmemory_mb: 128\ntimeout_s: 10\n"
_KMS = "arn:aws:kms:eu-west-1:111122223333:key/0d1c5b1e-7f4a-4c3e-9a52-2b7e1f0c9d11"


def _module(auth: str) -> bytes:
    """A clean function, its role and log group, and a function URL of `auth`."""
    return f"""resource "aws_lambda_function" "api" {{
  function_name                  = "api"
  role                           = aws_iam_role.api.arn
  runtime                        = "python3.13"
  handler                        = "main.handler"
  filename                       = "api.zip"
  reserved_concurrent_executions = 20
  tracing_config {{
    mode = "Active"
  }}
}}

resource "aws_iam_role" "api" {{
  name = "api"
  assume_role_policy = jsonencode({{
    Version   = "2012-10-17"
    Statement = [{{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = {{ Service = "lambda.amazonaws.com" }}
    }}]
  }})
}}

resource "aws_cloudwatch_log_group" "api" {{
  name              = "/aws/lambda/api"
  retention_in_days = 30
  kms_key_id        = "{_KMS}"
}}

resource "aws_lambda_function_url" "api" {{
  function_name      = aws_lambda_function.api.function_name
  authorization_type = "{auth}"
}}
""".encode()


_URL_LINE = next(n for n, t in enumerate(_module("NONE").splitlines(), 1) if b'"NONE"' in t)


@pytest.fixture(scope="module")
def developer(node: LiveNode) -> str:
    key: str = node.create_key("tofu-attacker", "developer")["key"]
    return key


def _deploy(node: LiveNode, key: str, files: Mapping[str, bytes]) -> httpx.Response:
    return deploy_with(node, key, _MANIFEST, files)


def test_public_function_url_in_a_tofu_file_is_refused(node: LiveNode, developer: str) -> None:
    """A function URL with authorization_type NONE in infra/main.tofu blocks the deploy,
    reported at its file and line."""
    problems = gate_problems(_deploy(node, developer, {"infra/main.tofu": _module("NONE")}))
    assert any(p.startswith(f"DJ-IAC-010 infra/main.tofu:{_URL_LINE}") for p in problems), problems


def test_tofu_file_standing_in_for_a_clean_tf_file_is_judged(
    node: LiveNode, developer: str
) -> None:
    """main.tf says AWS_IAM, main.tofu (which OpenTofu reads in its place) says NONE: the
    deploy is refused for the URL OpenTofu would create."""
    files = {"infra/main.tf": _module("AWS_IAM"), "infra/main.tofu": _module("NONE")}
    problems = gate_problems(_deploy(node, developer, files))
    assert any(p.startswith(f"DJ-IAC-010 infra/main.tofu:{_URL_LINE}") for p in problems), problems


def test_tf_file_a_tofu_file_stands_in_for_is_still_judged(node: LiveNode, developer: str) -> None:
    """main.tofu says AWS_IAM, main.tf (which Terraform applies, not reading .tofu files)
    says NONE: the deploy is refused for the URL Terraform would create."""
    files = {"infra/main.tf": _module("NONE"), "infra/main.tofu": _module("AWS_IAM")}
    problems = gate_problems(_deploy(node, developer, files))
    assert any(p.startswith(f"DJ-IAC-010 infra/main.tf:{_URL_LINE}") for p in problems), problems


def test_tofu_override_file_cannot_reopen_a_function_url(node: LiveNode, developer: str) -> None:
    """main.tofu says AWS_IAM, main_override.tofu.json (which OpenTofu merges over it) says
    NONE: refused."""
    override = {"resource": {"aws_lambda_function_url": {"api": {"authorization_type": "NONE"}}}}
    files = {
        "infra/main.tofu": _module("AWS_IAM"),
        "infra/main_override.tofu.json": json.dumps(override).encode(),
    }
    problems = gate_problems(_deploy(node, developer, files))
    assert any(p.startswith(f"DJ-IAC-010 infra/main.tofu:{_URL_LINE}") for p in problems), problems


def test_secret_in_a_tofu_file_is_refused(node: LiveNode, developer: str) -> None:
    """A private key written into a .tofu file is found as it is in a .tf file."""
    pem = (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
        "-----END RSA PRIVATE KEY-----\n"
    )
    text = _module("AWS_IAM") + f"\nlocals {{\n  key = <<EOT\n{pem}EOT\n}}\n".encode()
    problems = gate_problems(_deploy(node, developer, {"infra/main.tofu": text}))
    assert any("infra/main.tofu:" in p and p.startswith("DJ-SEC") for p in problems), problems


def test_the_same_tofu_module_fixed_deploys(node: LiveNode, developer: str) -> None:
    """With authorization_type AWS_IAM in both files, the module passes the gate."""
    files = {"infra/main.tf": _module("AWS_IAM"), "infra/main.tofu": _module("AWS_IAM")}
    r = _deploy(node, developer, files)
    assert r.status_code == 201, r.text
