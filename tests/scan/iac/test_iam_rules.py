"""DJ-IAC-001..005 over hand-built functions: what each rule reports and what it leaves."""

from __future__ import annotations

from dataclasses import dataclass

from donjon.scan.iac.catalog import CHECKS, IAC_RULES
from donjon.scan.iac.iam.rules import function_findings
from donjon.scan.iac.model import (
    App,
    Cloud,
    Condition,
    Effect,
    Function,
    Policy,
    Statement,
    TemplateKind,
    Unresolved,
    Val,
    Where,
)
from donjon.scan.model import Confidence, Finding, Severity

WHERE = Where("template.yaml", 3, "ApiFunction")


def _fn(*policies: Policy, role: Val[str] | None = None) -> Function:
    return Function(WHERE, Cloud.AWS, role=role or Val(), policies=policies)


def _inline(*statements: Statement, conditional: bool = False) -> Policy:
    return Policy("inline", 10, statements=statements, conditional=conditional)


def _allow(*actions: str, resources: tuple[str, ...] = ("*",), line: int = 12) -> Statement:
    return Statement(Effect.ALLOW, line, actions=actions, resources=resources)


def _found(function: Function, rule: str) -> list[Finding]:
    return [f for f in function_findings(function) if f.rule_id == rule]


def test_admin_access_by_managed_policy_name() -> None:
    """SAM Policies: [AdministratorAccess] is admin access, at the line naming it."""
    (finding,) = _found(
        _fn(Policy("AdministratorAccess", 9, managed="AdministratorAccess")), "DJ-IAC-001"
    )
    assert finding.location.line == 9 and finding.location.resource == "ApiFunction"
    assert finding.severity is Severity.CRITICAL and finding.confidence is Confidence.HIGH


def test_admin_access_by_arn_from_a_parameter_default() -> None:
    """A ManagedPolicyArns entry resolved to the AdministratorAccess ARN is admin access."""
    policy = Policy("p", 9, managed="arn:aws:iam::aws:policy/AdministratorAccess")
    assert _found(_fn(policy), "DJ-IAC-001")


def test_admin_access_by_wildcard_statement_and_not_action() -> None:
    """Allow * on * and Allow NotAction on * are both admin access."""
    assert _found(_fn(_inline(_allow("*"))), "DJ-IAC-001")
    not_action = Statement(Effect.ALLOW, 12, not_actions=("iam:*",), resources=("*",))
    (finding,) = _found(_fn(_inline(not_action)), "DJ-IAC-001")
    assert "except iam:*" in finding.message


def test_admin_under_fn_if_may_grant() -> None:
    """A policy that exists only under Fn::If is reported as 'may grant', medium."""
    (finding,) = _found(_fn(_inline(_allow("*"), conditional=True)), "DJ-IAC-001")
    assert "may grant" in finding.message and finding.confidence is Confidence.MEDIUM


def test_scoped_policy_is_not_admin() -> None:
    """Named actions on a named table are no admin, wildcard or escalation finding."""
    table = ("arn:aws:dynamodb:eu-west-1:123456789012:table/orders",)
    findings = function_findings(
        _fn(_inline(_allow("dynamodb:GetItem", "dynamodb:PutItem", resources=table)))
    )
    assert findings == []


def test_service_wildcard_in_any_case() -> None:
    """S3:* on a bucket grants every S3 action (IAM ignores case)."""
    bucket = ("arn:aws:s3:::uploads/*",)
    (finding,) = _found(_fn(_inline(_allow("S3:*", resources=bucket))), "DJ-IAC-002")
    assert "S3:*" in finding.message and finding.severity is Severity.HIGH


def test_wildcard_hiding_permissions_management() -> None:
    """s3:Put* looks like writes but includes s3:PutBucketPolicy: reported, naming them."""
    (finding,) = _found(
        _fn(_inline(_allow("s3:Put*", resources=("arn:aws:s3:::uploads",)))), "DJ-IAC-002"
    )
    assert "permissions management" in finding.message
    assert finding.severity is Severity.MEDIUM


def test_read_wildcard_is_not_a_service_wildcard() -> None:
    """s3:Get* on a bucket contains no permissions management action: no DJ-IAC-002."""
    assert not _found(
        _fn(_inline(_allow("s3:Get*", resources=("arn:aws:s3:::uploads/*",)))), "DJ-IAC-002"
    )


def test_full_access_managed_policies() -> None:
    """AmazonS3FullAccess (from the table) and an unknown *FullAccess (by name) are
    reported; the first at high confidence, the second at medium."""
    table = _found(_fn(Policy("s3", 9, managed="AmazonS3FullAccess")), "DJ-IAC-002")
    assert table and table[0].confidence is Confidence.HIGH
    (by_name,) = _found(_fn(Policy("r53", 9, managed="AmazonRoute53FullAccess")), "DJ-IAC-002")
    assert by_name.confidence is Confidence.MEDIUM


def test_write_on_every_resource() -> None:
    """dynamodb:PutItem on '*' is a medium wildcard-resource finding."""
    (finding,) = _found(_fn(_inline(_allow("dynamodb:PutItem"))), "DJ-IAC-003")
    assert finding.severity is Severity.MEDIUM and "dynamodb:PutItem" in finding.message


def test_read_on_every_resource_is_low() -> None:
    """s3:GetObject on '*' is reported at low severity."""
    (finding,) = _found(_fn(_inline(_allow("s3:GetObject"))), "DJ-IAC-003")
    assert finding.severity is Severity.LOW


def test_wildcard_only_actions_are_not_reported() -> None:
    """xray:PutTraceSegments can only take '*': no wildcard-resource finding."""
    assert (
        function_findings(_fn(_inline(_allow("xray:PutTraceSegments", "sts:GetCallerIdentity"))))
        == []
    )


def test_basic_execution_role_is_clean() -> None:
    """AWSLambdaBasicExecutionRole (logs on '*') is not reported."""
    assert function_findings(_fn(Policy("b", 9, managed="AWSLambdaBasicExecutionRole"))) == []


def test_condition_lowers_severity_and_confidence() -> None:
    """s3:PutObject on '*' under a Condition: one severity lower, medium confidence."""
    condition = Condition("StringEquals", "aws:ResourceAccount", ("123456789012",))
    statement = Statement(
        Effect.ALLOW, 12, actions=("s3:PutObject",), resources=("*",), conditions=(condition,)
    )
    (finding,) = _found(_fn(_inline(statement)), "DJ-IAC-003")
    assert finding.severity is Severity.LOW and finding.confidence is Confidence.MEDIUM
    assert "aws:ResourceAccount" in finding.message


def test_passrole_with_lambda_create_and_invoke_escalates() -> None:
    """iam:PassRole on * with lambda:CreateFunction and InvokeFunction is escalation."""
    statements = (
        _allow("iam:PassRole", line=12),
        _allow("lambda:CreateFunction", "lambda:InvokeFunction", line=13),
    )
    (finding,) = _found(_fn(_inline(*statements)), "DJ-IAC-004")
    assert finding.location.line == 12 and finding.confidence is Confidence.HIGH
    assert "lambda:CreateFunction" in finding.message and "lambda:InvokeFunction" in finding.message


def test_passrole_on_every_role_alone() -> None:
    """iam:PassRole on '*' alone is its own escalation finding."""
    (finding,) = _found(_fn(_inline(_allow("iam:PassRole"))), "DJ-IAC-004")
    assert "every role" in finding.message


def test_passrole_to_one_role_is_not_escalation() -> None:
    """iam:PassRole on one named role, even with lambda:CreateFunction, is not reported."""
    role = ("arn:aws:iam::123456789012:role/worker",)
    statements = (
        _allow("iam:PassRole", resources=role),
        _allow(
            "lambda:CreateFunction",
            "lambda:InvokeFunction",
            resources=("arn:aws:lambda:eu-west-1:123456789012:function:w",),
        ),
    )
    assert not _found(_fn(_inline(*statements)), "DJ-IAC-004")


def test_denied_passrole_breaks_the_path() -> None:
    """Allow iam:PassRole and lambda:* with Deny iam:PassRole: no escalation via PassRole."""
    deny = Statement(Effect.DENY, 14, actions=("iam:PassRole",), resources=("*",))
    statements = (
        _allow("iam:PassRole", line=12),
        _allow(
            "lambda:CreateFunction",
            "lambda:InvokeFunction",
            resources=("arn:aws:lambda:eu-west-1:1:function:w",),
            line=13,
        ),
        deny,
    )
    assert not _found(_fn(_inline(*statements)), "DJ-IAC-004")


def test_attach_role_policy_in_iam_wildcard() -> None:
    """iam:* includes iam:AttachRolePolicy: escalation, found through the catalog."""
    (finding,) = _found(_fn(_inline(_allow("iam:*"))), "DJ-IAC-004")
    assert "iam:AttachRolePolicy" in finding.message


def test_unresolved_role_is_low_confidence_not_safe() -> None:
    """A role from ${env:ROLE_ARN} is reported at low confidence, naming the expression."""
    role: Val[str] = Val.unknown("${env:ROLE_ARN}", "environment variable", 5)
    (finding,) = _found(_fn(role=role), "DJ-IAC-005")
    assert finding.confidence is Confidence.LOW and "${env:ROLE_ARN}" in finding.message
    assert finding.location.line == 5


def test_external_role_and_customer_policy_are_unseen() -> None:
    """A role ARN without policies and a customer managed policy are both unknown."""
    external = _fn(role=Val.of("arn:aws:iam::123456789012:role/legacy", 5))
    assert _found(external, "DJ-IAC-005")
    customer = _fn(Policy("c", 9, managed="arn:aws:iam::123456789012:policy/app"))
    (finding,) = _found(customer, "DJ-IAC-005")
    assert finding.location.line == 9


def test_unresolved_statement_part_is_reported() -> None:
    """A statement whose resource is an unresolved parameter is reported (low)."""
    statement = Statement(
        Effect.ALLOW,
        12,
        actions=("s3:GetObject",),
        unresolved=(Unresolved("!Ref BucketArn", "parameter without default"),),
    )
    (finding,) = _found(_fn(_inline(statement)), "DJ-IAC-005")
    assert "!Ref BucketArn" in finding.message


def test_known_inline_policy_is_not_unseen() -> None:
    """A function whose policies are all known gets no DJ-IAC-005."""
    assert not _found(
        _fn(_inline(_allow("s3:GetObject", resources=("arn:aws:s3:::b/*",)))), "DJ-IAC-005"
    )


def test_rules_are_in_the_catalog_and_run_over_apps() -> None:
    """DJ-IAC-001..005 are catalogued; the catalog's checks find admin access in an app."""
    assert {r.id for r in IAC_RULES} >= {f"DJ-IAC-00{n}" for n in range(1, 6)}
    app = App(
        "template.yaml",
        TemplateKind.SAM,
        functions=(_fn(Policy("a", 9, managed="AdministratorAccess")),),
    )
    found = [f.rule_id for check in CHECKS for f in check(app)]
    assert [r for r in found if r < "DJ-IAC-010"] == ["DJ-IAC-001"]


def test_wildcard_in_the_middle_reaches_passrole() -> None:
    """iam:Pass* on '*' is iam:PassRole on every role (no literal comparison)."""
    (finding,) = _found(_fn(_inline(_allow("iam:Pass*"))), "DJ-IAC-004")
    assert "iam:PassRole" in finding.message


def test_star_colon_star_is_admin() -> None:
    """Action '*:*' is every action, like '*'."""
    assert _found(_fn(_inline(_allow("*:*"))), "DJ-IAC-001")


def test_service_wildcard_in_the_prefix_hiding_permissions_management() -> None:
    """'*:PutBucket*' on a bucket reaches s3:PutBucketPolicy through the prefix wildcard."""
    statement = _allow("*:PutBucket*", resources=("arn:aws:s3:::site",))
    (finding,) = _found(_fn(_inline(statement)), "DJ-IAC-002")
    assert "s3:PutBucketPolicy" in finding.message or "permissions management" in finding.message


def test_curated_statements_are_not_wildcard_resource_findings() -> None:
    """Statements a loader filled in for an AWS managed policy or a SAM policy template
    are judged for admin, wildcards and escalation, not for Resource '*'."""
    logs = _allow("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents")
    managed = Policy("b", 9, statements=(logs,), managed="AWSLambdaBasicExecutionRole")
    vpc = _allow("ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface")
    template = Policy("v", 9, statements=(vpc,), template="VPCAccessPolicy")
    assert function_findings(_fn(managed, template)) == []


def test_power_user_access_is_near_admin() -> None:
    """PowerUserAccess (NotAction iam:*, organizations:*, account:*) is admin access."""
    (finding,) = _found(_fn(Policy("pu", 9, managed="PowerUserAccess")), "DJ-IAC-001")
    assert "except iam:*" in finding.message and "PowerUserAccess" in finding.message


@dataclass(frozen=True)
class _FiledStatement(Statement):
    """A statement as the Terraform loader records it: with the file it is written in."""

    path: str = ""


def test_finding_points_at_the_file_the_statement_is_in() -> None:
    """A statement written in iam.tf is reported in iam.tf, with the function's address."""
    statement = _FiledStatement(
        Effect.ALLOW, 4, actions=("iam:PassRole",), resources=("*",), path="iam.tf"
    )
    (finding,) = _found(_fn(_inline(statement)), "DJ-IAC-004")
    assert (finding.location.path, finding.location.line) == ("iam.tf", 4)
    assert finding.location.resource == "ApiFunction"


def test_fully_denied_allow_reports_nothing() -> None:
    """Allow * with Deny * on every resource grants nothing: no finding."""
    deny = Statement(Effect.DENY, 13, actions=("*",), resources=("*",))
    assert function_findings(_fn(_inline(_allow("*"), deny))) == []


def test_admin_less_denied_actions_names_them() -> None:
    """Allow * with Deny iam:* is still admin access, naming what is denied."""
    deny = Statement(Effect.DENY, 13, actions=("iam:*",), resources=("*",))
    (finding,) = _found(_fn(_inline(_allow("*"), deny)), "DJ-IAC-001")
    assert "denied actions" in finding.message and "iam:" in finding.message


def test_not_action_in_a_deny_grants_nothing() -> None:
    """Deny NotAction dynamodb:* leaves the dynamodb Allow as written, and grants nothing."""
    table = ("arn:aws:dynamodb:eu-west-1:123456789012:table/orders",)
    deny = Statement(Effect.DENY, 13, not_actions=("dynamodb:*",), resources=("*",))
    assert function_findings(_fn(_inline(_allow("dynamodb:GetItem", resources=table), deny))) == []


def test_unknown_aws_managed_policy_and_unexpanded_template_are_unseen() -> None:
    """An AWS managed policy outside the table and an unexpanded SAM policy template are
    DJ-IAC-005 at low confidence, each at its own line."""
    function = _fn(
        Policy("ro", 9, managed="ReadOnlyAccess"), Policy("t", 10, template="NewSamPolicy")
    )
    found = _found(function, "DJ-IAC-005")
    assert sorted(f.location.line for f in found) == [9, 10]
    assert all(f.confidence is Confidence.LOW for f in found)
