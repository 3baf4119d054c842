"""The CloudFormation resolver: each intrinsic function, as the model shows it."""

from __future__ import annotations

import textwrap

from donjon.scan.iac.cfn import load_text
from donjon.scan.iac.model import App, EnvVar, Unresolved, Val

HEAD = """\
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  Stage:
    Type: String
    Default: prod
  Names:
    Type: CommaDelimitedList
    Default: "a, b, c"
  Token:
    Type: String
    NoEcho: true
  FromSsm:
    Type: AWS::SSM::Parameter::Value<String>
    Default: /app/key
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Mappings:
  Regions:
    prod:
      Table: orders-prod
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: app.handler
      Role: arn:aws:iam::123456789012:role/fixed
      Environment:
        Variables:
"""


def _env(variables: str) -> dict[str, Val[str]]:
    """The environment of `Fn` with `variables` (YAML at the Variables level)."""
    text = HEAD + textwrap.indent(textwrap.dedent(variables), " " * 10)
    app = load_text("template.yaml", text)
    assert isinstance(app, App)
    return {e.name: e.value for e in app.functions[0].environment}


def test_ref_resolves_parameters_pseudo_parameters_and_resources() -> None:
    """A parameter gives its default, a pseudo parameter its value or placeholder, a
    resource its ``${LogicalId}``."""
    env = _env(
        """\
        STAGE: !Ref Stage
        PARTITION: !Ref AWS::Partition
        REGION: !Ref AWS::Region
        QUEUE: !Ref Queue
        """
    )
    assert env["STAGE"] == Val.of("prod", 32)
    assert env["PARTITION"].one == "aws"
    assert env["REGION"].one == "${AWS::Region}"
    assert env["QUEUE"].one == "${Queue}"


def test_sub_resolves_both_forms_and_keeps_escaped_names() -> None:
    """``Fn::Sub`` with a string and with a variable map; ``${!x}`` stays literal."""
    env = _env(
        """\
        PLAIN: !Sub 'arn:${AWS::Partition}:sqs:${AWS::Region}:${Stage}:${Queue.Arn}'
        MAPPED: !Sub ['${Prefix}-${Stage}', {Prefix: !FindInMap [Regions, !Ref Stage, Table]}]
        ESCAPED: !Sub '${!Literal}-${Stage}'
        """
    )
    assert env["PLAIN"].one == "arn:aws:sqs:${AWS::Region}:prod:${Queue.Arn}"
    assert env["MAPPED"].one == "orders-prod-prod"
    assert env["ESCAPED"].one == "${Literal}-prod"


def test_getatt_findinmap_join_select_split() -> None:
    """GetAtt (both forms), FindInMap (with DefaultValue too), Join, Select and Split
    give their values."""
    env = _env(
        """\
        SHORT: !GetAtt Queue.Arn
        LONG: {"Fn::GetAtt": [Queue, QueueName]}
        TABLE: !FindInMap [Regions, !Ref Stage, Table]
        FALLBACK: !FindInMap [Regions, dev, Table, {DefaultValue: orders-dev}]
        JOINED: !Join ['-', [x, !Ref Stage, y]]
        SECOND: !Select [1, !Ref Names]
        SPLIT: !Select [2, !Split [':', 'p:q:r']]
        """
    )
    assert env["SHORT"].one == "${Queue.Arn}"
    assert env["LONG"].one == "${Queue.QueueName}"
    assert env["TABLE"].one == "orders-prod"
    assert env["FALLBACK"].one == "orders-dev"
    assert env["JOINED"].one == "x-prod-y"
    assert env["SECOND"].one == "b"
    assert env["SPLIT"].one == "r"


def test_if_gives_both_branches_as_conditional() -> None:
    """``Fn::If`` keeps both branches, marked conditional; inside a Sub, each branch's
    string; a NoValue branch drops out."""
    env = _env(
        """\
        MODE: !If [IsProd, fast, slow]
        URL: !Join ['', ['https://', !If [IsProd, api, test], '.example.org']]
        MAYBE: !If [IsProd, only-prod, !Ref AWS::NoValue]
        """
    )
    assert env["MODE"] == Val(("fast", "slow"), (), 32, True)
    assert env["URL"].known == ("https://api.example.org", "https://test.example.org")
    assert env["URL"].conditional
    assert env["MAYBE"] == Val(("only-prod",), (), 34, True)


def test_what_cannot_be_known_is_unresolved_with_the_expression() -> None:
    """ImportValue, SSM dynamic references and SSM-typed parameters, a parameter without
    default and an unknown name are unresolved, each with the expression as written; a
    Sub using one too."""
    env = _env(
        """\
        IMPORTED: !ImportValue shared-table
        SSM: '{{resolve:ssm:/app/token}}'
        TOKEN: !Ref Token
        KEY: !Ref FromSsm
        MISSING: !Ref Nowhere
        BUILT: !Sub 'Bearer ${Token}'
        """
    )
    assert env["IMPORTED"].unresolved[0].expression == "!ImportValue shared-table"
    assert env["SSM"].unresolved[0] == Unresolved(
        "{{resolve:ssm:/app/token}}", "a dynamic reference, resolved only at deploy time"
    )
    assert env["TOKEN"].unresolved[0].expression == "!Ref Token"
    assert env["TOKEN"].unresolved[0].reason == (
        "parameter Token (NoEcho) has no default: it is given at deploy time"
    )
    assert env["KEY"].unresolved[0].reason == (
        "parameter FromSsm is the value of SSM parameter /app/key, read at deploy time"
    )
    assert env["MISSING"].unresolved[0].expression == "!Ref Nowhere"
    assert env["BUILT"].unresolved[0].expression == "!Sub Bearer ${Token}"
    assert "!Ref Token" in env["BUILT"].unresolved[0].reason
    assert all(not v.known for v in env.values())


def test_values_keep_the_line_of_the_property_that_uses_them() -> None:
    """A parameter's value points at the property using it, not at the parameter."""
    env = _env(
        """\
        FIRST: plain
        SECOND: !Ref Stage
        """
    )
    assert [env["FIRST"].line, env["SECOND"].line] == [32, 33]


def test_json_templates_resolve_the_same_and_carry_lines() -> None:
    """The long form in JSON resolves as the short form in YAML, with JSON's lines."""
    text = """{
  "AWSTemplateFormatVersion": "2010-09-09",
  "Parameters": {"Stage": {"Type": "String", "Default": "dev"}},
  "Resources": {
    "Fn": {
      "Type": "AWS::Lambda::Function",
      "Properties": {
        "Runtime": "nodejs20.x",
        "Role": {"Fn::Sub": "arn:aws:iam::${AWS::AccountId}:role/${Stage}"},
        "Environment": {"Variables": {"STAGE": {"Ref": "Stage"}}}
      }
    }
  }
}
"""
    app = load_text("template.json", text)
    assert isinstance(app, App)
    fn = app.functions[0]
    assert fn.where.line == 5
    assert fn.runtime == Val.of("nodejs20.x", 8)
    assert fn.role == Val.of("arn:aws:iam::${AWS::AccountId}:role/dev", 9)
    assert fn.environment == (EnvVar("STAGE", Val.of("dev", 10)),)
