"""IAM policy documents read into the model's statements (shared by every loader)."""

from __future__ import annotations

from donjon.scan.iac.model import Condition, Effect, Unresolved
from donjon.scan.iac.statements import line_of, parse_policy, parse_statement


class _Node(dict[str, object]):
    """A resolved mapping as a loader hands it over: with its line and condition."""

    def __init__(self, data: dict[str, object], line: int, conditional: bool = False) -> None:
        super().__init__(data)
        self.line = line
        self.conditional = conditional


def test_string_and_list_forms_give_the_same_statement() -> None:
    """Action, Resource and their Not forms take a string or a list alike."""
    one = parse_statement({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})
    many = parse_statement({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["*"]})
    assert one == many
    assert one.actions == ("s3:GetObject",)
    assert one.resources == ("*",)
    negated = parse_statement(
        {"Effect": "Deny", "NotAction": ["iam:*", "sts:*"], "NotResource": "arn:aws:s3:::b"}
    )
    assert negated.effect is Effect.DENY
    assert negated.not_actions == ("iam:*", "sts:*")
    assert negated.not_resources == ("arn:aws:s3:::b",)
    assert negated.actions == ()
    assert negated.unresolved == ()


def test_principals_are_normalised() -> None:
    """``*`` and ``{AWS: *}`` are anyone; services, federated and canonical ids are prefixed."""
    assert parse_statement({"Effect": "Allow", "Principal": "*"}).principals == ("*",)
    assert parse_statement({"Effect": "Allow", "Principal": {"AWS": "*"}}).principals == ("*",)
    mixed = parse_statement(
        {
            "Effect": "Allow",
            "Principal": {
                "AWS": ["123456789012", "arn:aws:iam::111122223333:root"],
                "Service": "s3.amazonaws.com",
                "Federated": "cognito-identity.amazonaws.com",
                "CanonicalUser": "abc",
            },
            "NotPrincipal": {"Service": ["sns.amazonaws.com"]},
        }
    )
    assert mixed.principals == (
        "123456789012",
        "arn:aws:iam::111122223333:root",
        "service:s3.amazonaws.com",
        "federated:cognito-identity.amazonaws.com",
        "canonical:abc",
    )
    assert mixed.not_principals == ("service:sns.amazonaws.com",)


def test_conditions_are_kept_with_operator_key_and_values() -> None:
    """Each operator/key pair is one Condition; a single value becomes a one-value tuple."""
    statement = parse_statement(
        {
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Condition": {
                "ArnEquals": {"aws:SourceArn": "arn:aws:sns:us-east-1:1:t"},
                "StringEquals": {"aws:SourceAccount": ["1", "2"], "aws:PrincipalOrgID": "o-1"},
            },
        }
    )
    assert statement.conditions == (
        Condition("ArnEquals", "aws:SourceArn", ("arn:aws:sns:us-east-1:1:t",)),
        Condition("StringEquals", "aws:SourceAccount", ("1", "2")),
        Condition("StringEquals", "aws:PrincipalOrgID", ("o-1",)),
    )


def test_unresolved_parts_are_kept_never_dropped() -> None:
    """An unresolved resource, a leftover intrinsic and a bad condition all land in unresolved."""
    ref = Unresolved("!ImportValue Shared", "imported from another stack")
    statement = parse_statement(
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", {"Fn::Foo": "x"}],
            "Resource": ref,
            "Condition": "nonsense",
        }
    )
    assert statement.actions == ("s3:GetObject",)
    assert statement.resources == ()
    assert statement.unresolved[0] == Unresolved('{"Fn::Foo": "x"}', "Action is not a string")
    assert statement.unresolved[1] is ref
    assert statement.unresolved[2].reason == "Condition is not a mapping"


def test_an_unknown_effect_reads_as_allow_and_unresolved() -> None:
    """A missing or unresolved Effect is read as Allow (the worse reading) and flagged."""
    missing = parse_statement({"Action": "*", "Resource": "*"})
    assert missing.effect is Effect.ALLOW
    assert missing.unresolved[0].reason == "Effect is not Allow or Deny"
    ref = Unresolved("!Ref Effect", "parameter without a default")
    assert parse_statement({"Effect": ref, "Action": "*"}).unresolved == (ref,)


def test_a_statement_that_is_not_a_mapping_is_wholly_unresolved() -> None:
    """A string where a statement should be is an Allow with nothing known."""
    statement = parse_statement("oops", 7)
    assert statement.effect is Effect.ALLOW
    assert statement.line == 7
    assert statement.actions == ()
    assert statement.unresolved == (Unresolved('"oops"', "statement is not a mapping"),)


def test_documents_lists_and_single_statements_are_all_read() -> None:
    """A document with Statement, a bare list and a lone statement give their statements."""
    allow = {"Effect": "Allow", "Action": "logs:*", "Resource": "*"}
    assert len(parse_policy({"Version": "2012-10-17", "Statement": [allow, allow]})) == 2
    assert len(parse_policy({"Version": "2012-10-17", "Statement": allow})) == 1
    assert len(parse_policy([allow])) == 1
    assert len(parse_policy(allow)) == 1
    assert parse_policy(None) == ()
    assert parse_policy({"Statement": None}) == ()


def test_lines_and_conditions_come_from_the_nodes() -> None:
    """A node's own line wins over the document's; a conditional node marks its statements."""
    first = _Node({"Effect": "Allow", "Action": "s3:*"}, 12)
    second = _Node({"Effect": "Allow", "Action": "sqs:*"}, 15, conditional=True)
    document = _Node({"Statement": [first, second, {"Effect": "Deny", "Action": "*"}]}, 10)
    statements = parse_policy(document, 3)
    assert [s.line for s in statements] == [12, 15, 10]
    assert [s.conditional for s in statements] == [False, True, False]
    assert parse_policy([first], 3, conditional=True)[0].conditional
    assert line_of(first) == 12
    assert line_of({}, 4) == 4


def test_numbers_and_booleans_become_strings() -> None:
    """Condition values written as numbers or booleans read as IAM reads them: strings."""
    statement = parse_statement(
        {"Effect": "Allow", "Condition": {"Bool": {"aws:SecureTransport": False}}, "Action": 5}
    )
    assert statement.conditions == (Condition("Bool", "aws:SecureTransport", ("false",)),)
    assert statement.actions == ("5",)
