"""AWS managed policies and SAM policy templates, from offline data.

SAM's own data, as installed with the ``aws-sam-translator`` package (the library
SAM itself transforms templates with): ``aws_managed_policies.json`` maps managed
policy names (``AmazonS3FullAccess``) to their ARNs, and ``policy_templates.json``
holds every policy template (``S3CrudPolicy``...) with its parameters and statements.
The content of a few managed policies whose meaning a rule needs is written here:
the broad ones, each as the statement that gives it its reach.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources

__all__ = ["KNOWN_CONTENT", "known_statements", "managed_arn", "managed_name", "policy_template"]

_AWS_POLICY = "arn:aws:iam::aws:policy/"

#: The statements that give these managed policies their reach (their full documents
#: add only narrower grants).
KNOWN_CONTENT: dict[str, tuple[dict[str, object], ...]] = {
    "AdministratorAccess": ({"Effect": "Allow", "Action": "*", "Resource": "*"},),
    "PowerUserAccess": (
        {
            "Effect": "Allow",
            "NotAction": ["iam:*", "organizations:*", "account:*"],
            "Resource": "*",
        },
    ),
    "IAMFullAccess": ({"Effect": "Allow", "Action": "iam:*", "Resource": "*"},),
    "AmazonS3FullAccess": (
        {"Effect": "Allow", "Action": ["s3:*", "s3-object-lambda:*"], "Resource": "*"},
    ),
    "AmazonDynamoDBFullAccess": ({"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},),
    "AmazonSQSFullAccess": ({"Effect": "Allow", "Action": "sqs:*", "Resource": "*"},),
    "AmazonSNSFullAccess": ({"Effect": "Allow", "Action": "sns:*", "Resource": "*"},),
    "AWSLambda_FullAccess": ({"Effect": "Allow", "Action": "lambda:*", "Resource": "*"},),
    "SecretsManagerReadWrite": (
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
    ),
}


@cache
def _sam_data(package: str, name: str) -> Mapping[str, object]:
    try:
        text = (resources.files(package) / name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, OSError):
        return {}
    data = json.loads(text)
    return data if isinstance(data, Mapping) else {}


def managed_arn(name: str) -> str:
    """The ARN of a managed policy named as SAM accepts it (a name or an ARN)."""
    if name.startswith("arn:"):
        return name
    arns = _sam_data("samtranslator.internal.data", "aws_managed_policies.json").get("aws")
    if isinstance(arns, Mapping) and isinstance(arns.get(name), str):
        return str(arns[name])
    return _AWS_POLICY + name


def managed_name(arn: str) -> str:
    """The policy name at the end of an AWS managed policy ARN (`arn` itself otherwise)."""
    if arn.startswith("arn:") and ":iam::aws:policy/" in arn:
        return arn.rsplit("/", 1)[-1]
    return arn


def known_statements(arn: str) -> tuple[dict[str, object], ...]:
    """What an AWS managed policy grants, when this module knows it."""
    if arn.startswith("arn:") and ":iam::aws:policy/" not in arn:
        return ()  # a customer managed policy: its content is not in the template
    return KNOWN_CONTENT.get(managed_name(arn), ())


def policy_template(name: str) -> Mapping[str, object] | None:
    """A SAM policy template (``Parameters`` and ``Definition``), None when unknown."""
    templates = _sam_data("samtranslator.policy_templates_data", "policy_templates.json").get(
        "Templates"
    )
    if not isinstance(templates, Mapping):
        return None
    found = templates.get(name)
    return found if isinstance(found, Mapping) else None
