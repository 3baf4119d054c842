"""IAM semantics of the evaluator: Deny, NotAction, NotResource, Condition, Fn::If."""

from __future__ import annotations

from donjon.scan.iac.iam.evaluate import Grant, evaluate, unbounded
from donjon.scan.iac.model import Cloud, Condition, Effect, Function, Policy, Statement, Where


def _function(*statements: Statement, conditional: bool = False) -> Function:
    policy = Policy("inline", 10, statements=statements, conditional=conditional)
    return Function(Where("template.yaml", 3, "Api"), Cloud.AWS, policies=(policy,))


def _allow(*actions: str, resources: tuple[str, ...] = ("*",), line: int = 11) -> Statement:
    return Statement(Effect.ALLOW, line, actions=actions, resources=resources)


def _grant(function: Function) -> Grant:
    (grant,) = evaluate(function).grants
    return grant


def _keys(grant: Grant) -> set[str]:
    return {a.key for a in grant.actions}


def test_deny_wins_over_allow() -> None:
    """Allow iam:* with Deny iam:PassRole leaves PassRole denied, the rest granted."""
    deny = Statement(Effect.DENY, 12, actions=("iam:PassRole",), resources=("*",))
    grant = _grant(_function(_allow("iam:*"), deny))
    assert "iam:passrole" not in _keys(grant)
    assert "iam:attachrolepolicy" in _keys(grant)
    assert {a.key for a in grant.denied} == {"iam:passrole"}


def test_conditional_deny_does_not_remove() -> None:
    """A Deny narrowed by a Condition may not apply: the Allow keeps its actions."""
    condition = Condition("StringEquals", "aws:RequestedRegion", ("eu-west-1",))
    deny = Statement(
        Effect.DENY, 12, actions=("iam:PassRole",), resources=("*",), conditions=(condition,)
    )
    assert "iam:passrole" in _keys(_grant(_function(_allow("iam:*"), deny)))


def test_deny_on_fewer_resources_does_not_remove() -> None:
    """A Deny on one role does not take PassRole away from an Allow on every role."""
    deny = Statement(
        Effect.DENY, 12, actions=("iam:PassRole",), resources=("arn:aws:iam::1:role/admin",)
    )
    assert "iam:passrole" in _keys(_grant(_function(_allow("iam:PassRole"), deny)))


def test_deny_covering_the_allow_resources_removes() -> None:
    """A Deny whose pattern covers every resource of the Allow removes its actions."""
    allow = _allow("s3:PutObject", resources=("arn:aws:s3:::logs/a/*",))
    deny = Statement(Effect.DENY, 12, actions=("s3:*",), resources=("arn:aws:s3:::logs/*",))
    assert not _grant(_function(allow, deny)).actions


def test_not_action_allow_grants_everything_else() -> None:
    """Allow with NotAction iam:* on * grants every other action: near admin."""
    statement = Statement(Effect.ALLOW, 11, not_actions=("iam:*",), resources=("*",))
    grant = _grant(_function(statement))
    assert "s3:getobject" in _keys(grant)
    assert "iam:passrole" not in _keys(grant)
    assert grant.admin and grant.not_action


def test_not_resource_allow_is_unbounded() -> None:
    """Allow on every resource but one is unbounded."""
    statement = Statement(
        Effect.ALLOW, 11, actions=("s3:PutObject",), not_resources=("arn:aws:s3:::audit/*",)
    )
    assert _grant(_function(statement)).unbounded


def test_condition_marks_the_grant_narrowed() -> None:
    """A statement with a Condition is narrowed, still granted."""
    condition = Condition("StringEquals", "iam:PassedToService", ("lambda.amazonaws.com",))
    statement = Statement(
        Effect.ALLOW, 11, actions=("iam:PassRole",), resources=("*",), conditions=(condition,)
    )
    grant = _grant(_function(statement))
    assert grant.narrowed and "iam:passrole" in _keys(grant)


def test_fn_if_policy_is_conditional() -> None:
    """A policy written under Fn::If makes its grants conditional."""
    assert _grant(_function(_allow("s3:GetObject"), conditional=True)).conditional


def test_unbounded_resources() -> None:
    """'*' and every-resource-of-a-type ARNs are unbounded; named resources are not."""
    for arn in ("*", "arn:aws:iam::*:role/*", "arn:aws:s3:::*", "arn:aws:s3:::*/*"):
        assert unbounded(arn), arn
    for arn in (
        "arn:aws:s3:::uploads/*",
        "arn:aws:iam::123456789012:role/worker",
        "arn:aws:dynamodb:eu-west-1:123456789012:table/orders",
    ):
        assert not unbounded(arn), arn
    assert unbounded("arn:aws:dynamodb:eu-west-1:123456789012:table/*")


def test_managed_policy_from_the_table_becomes_statements() -> None:
    """Policies: [AdministratorAccess] is evaluated as Allow * on *."""
    policy = Policy("AdministratorAccess", 9, managed="AdministratorAccess")
    function = Function(Where("t.yaml", 3, "Api"), Cloud.AWS, policies=(policy,))
    (grant,) = evaluate(function).grants
    assert (
        grant.admin and grant.source == "AWS managed policy AdministratorAccess" and grant.line == 9
    )
