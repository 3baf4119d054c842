"""A bundle whose infrastructure is written in Terraform's JSON syntax (``main.tf.json``,
as CDK for Terraform writes it) against a real node's deploy gate: it must be refused
for what the same module in ``.tf`` syntax is refused for, not pass unread."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from gate_support import deploy_with, gate_problems
from harness import LiveNode

_MANIFEST = b"name: tfjson\nhandler: main.handler\nmemory_mb: 128\ntimeout_s: 10\n"
_KMS = "arn:aws:kms:eu-west-1:111122223333:key/0d1c5b1e-7f4a-4c3e-9a52-2b7e1f0c9d11"
_ASSUME = (
    '${jsonencode({Version = "2012-10-17", Statement = [{Effect = "Allow",'
    ' Action = "sts:AssumeRole", Principal = {Service = "lambda.amazonaws.com"}}]})}'
)


@pytest.fixture(scope="module")
def developer(node: LiveNode) -> str:
    key: str = node.create_key("tfjson-attacker", "developer")["key"]
    return key


def _module(**resources: Any) -> dict[str, Any]:
    """A clean function, its role and log group, and `resources` besides."""
    return {
        "resource": {
            "aws_lambda_function": {
                "api": {
                    "function_name": "api",
                    "role": "${aws_iam_role.api.arn}",
                    "runtime": "python3.13",
                    "handler": "main.handler",
                    "filename": "api.zip",
                    "reserved_concurrent_executions": 20,
                    "tracing_config": {"mode": "Active"},
                }
            },
            "aws_iam_role": {"api": {"name": "api", "assume_role_policy": _ASSUME}},
            "aws_cloudwatch_log_group": {
                "api": {"name": "/aws/lambda/api", "retention_in_days": 30, "kms_key_id": _KMS}
            },
            **resources,
        }
    }


def _url(auth: str) -> dict[str, Any]:
    return {
        "api": {
            "function_name": "${aws_lambda_function.api.function_name}",
            "authorization_type": auth,
        }
    }


def _deploy(node: LiveNode, key: str, files: Mapping[str, bytes]) -> httpx.Response:
    return deploy_with(node, key, _MANIFEST, files)


def _json(module: dict[str, Any]) -> bytes:
    return json.dumps(module, indent=2).encode()


def test_public_function_url_in_tf_json_is_refused(node: LiveNode, developer: str) -> None:
    """A function URL with authorization_type NONE in infra/main.tf.json blocks the
    deploy, reported at the file and line of its JSON key."""
    text = _json(_module(aws_lambda_function_url=_url("NONE")))
    line = next(n for n, t in enumerate(text.splitlines(), 1) if b'"NONE"' in t)
    problems = gate_problems(_deploy(node, developer, {"infra/main.tf.json": text}))
    assert any(p.startswith(f"DJ-IAC-010 infra/main.tf.json:{line}") for p in problems), problems


def test_admin_policy_split_across_syntaxes_is_refused(node: LiveNode, developer: str) -> None:
    """An admin policy attached in iam.tf.json to the role main.tf declares for the
    function of fn.tf.json, its ARN from terraform.tfvars.json, blocks the deploy: files
    of both syntaxes in one directory are one module."""
    main = b"""resource "aws_iam_role" "api" {
  name               = "api"
  assume_role_policy = "{}"
}
"""
    iam = {
        "variable": {"policy": {"default": "arn:aws:iam::aws:policy/ReadOnlyAccess"}},
        "resource": {
            "aws_iam_role_policy_attachment": {
                "api": {"role": "${aws_iam_role.api.name}", "policy_arn": "${var.policy}"}
            }
        },
    }
    function = _module()
    del function["resource"]["aws_iam_role"]  # in main.tf
    files = {
        "infra/main.tf": main,
        "infra/iam.tf.json": _json(iam),
        "infra/terraform.tfvars.json": b'{"policy": "arn:aws:iam::aws:policy/AdministratorAccess"}',
        "infra/fn.tf.json": _json(function),
    }
    problems = gate_problems(_deploy(node, developer, files))
    assert any(p.startswith("DJ-IAC-001 infra/iam.tf.json:") for p in problems), problems


def test_the_same_module_fixed_deploys(node: LiveNode, developer: str) -> None:
    """With authorization_type AWS_IAM, the JSON module passes the gate: reading JSON
    refuses what is wrong, not the syntax."""
    text = _json(_module(aws_lambda_function_url=_url("AWS_IAM")))
    r = _deploy(node, developer, {"infra/main.tf.json": text})
    assert r.status_code == 201, r.text


def test_override_file_cannot_reopen_a_function_url(node: LiveNode, developer: str) -> None:
    """main.tf.json says AWS_IAM, main_override.tf.json (which Terraform merges over it)
    says NONE: the deploy is refused for the URL Terraform would create."""
    override = {"resource": {"aws_lambda_function_url": {"api": {"authorization_type": "NONE"}}}}
    files = {
        "infra/main.tf.json": _json(_module(aws_lambda_function_url=_url("AWS_IAM"))),
        "infra/main_override.tf.json": _json(override),
    }
    problems = gate_problems(_deploy(node, developer, files))
    assert any(p.startswith("DJ-IAC-010 infra/main.tf.json:") for p in problems), problems
