"""SAM and Lambda functions in the model: Globals, roles and policies, failure
destinations, concurrency, encryption, tracing, logs, URLs and permissions."""

from __future__ import annotations

from donjon.scan.iac.cfn import load_text
from donjon.scan.iac.model import App, Condition, Effect, Function, TriggerKind, Val

SAM = "AWSTemplateFormatVersion: '2010-09-09'\nTransform: AWS::Serverless-2016-10-31\n"


def _app(text: str) -> App:
    app = load_text("template.yaml", text)
    assert isinstance(app, App)
    return app


def _fn(text: str, name: str = "Fn") -> Function:
    return next(f for f in _app(text).functions if f.where.resource == name)


GLOBALS = (
    SAM
    + """\
Globals:
  Function:
    Runtime: python3.12
    Tracing: Active
    Layers: [arn:aws:lambda:us-east-1:1:layer:g:1]
    Environment:
      Variables:
        SHARED: from-globals
        LEVEL: info
Resources:
  Own:
    Type: AWS::Serverless::Function
    Properties:
      Handler: a.h
      Runtime: python3.9
      Environment:
        Variables:
          LEVEL: debug
  Plain:
    Type: AWS::Serverless::Function
    Properties:
      Handler: b.h
  Lambda:
    Type: AWS::Lambda::Function
    Properties:
      Handler: c.h
      Role: arn:aws:iam::1:role/r
"""
)


def test_globals_apply_but_the_function_s_own_value_wins() -> None:
    """A function's Runtime beats Globals'; environment maps merge key by key, the
    function's keys winning; values from Globals point at Globals."""
    own = _fn(GLOBALS, "Own")
    assert own.runtime == Val.of("python3.9", 17)
    env = {e.name: e.value for e in own.environment}
    assert env["LEVEL"] == Val.of("debug", 20)
    assert env["SHARED"] == Val.of("from-globals", 10)
    plain = _fn(GLOBALS, "Plain")
    assert plain.runtime == Val.of("python3.12", 5)
    assert plain.tracing == Val.of("Active", 6)


def test_globals_do_not_reach_plain_lambda_functions() -> None:
    """SAM Globals apply to AWS::Serverless::Function only."""
    fn = _fn(GLOBALS, "Lambda")
    assert not fn.runtime.present
    assert fn.environment == ()
    assert not fn.tracing.present


SAM_POLICIES = (
    SAM
    + """\
Parameters:
  PolicyArn:
    Type: String
    Default: arn:aws:iam::aws:policy/AdministratorAccess
  Other:
    Type: String
Resources:
  Bucket:
    Type: AWS::S3::Bucket
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.h
      Runtime: python3.12
      Policies:
        - AmazonS3ReadOnlyAccess
        - !Ref PolicyArn
        - S3CrudPolicy:
            BucketName: !Ref Bucket
        - Statement:
            - Effect: Allow
              Action: [iam:PassRole, lambda:CreateFunction]
              Resource: '*'
        - NoSuchPolicyTemplate: {}
        - !Ref Other
"""
)


def test_sam_policies_cover_names_references_templates_and_statements() -> None:
    """Managed names become ARNs, a parameter's default ARN is followed (with its known
    content), policy templates expand, inline statements are read, the rest unresolved."""
    policies = _fn(SAM_POLICIES).policies
    assert [(p.name, p.line) for p in policies] == [
        ("AmazonS3ReadOnlyAccess", 18),
        ("AdministratorAccess", 19),
        ("S3CrudPolicy", 20),
        ("FnPolicy", 22),
        ("NoSuchPolicyTemplate", 26),
        ("!Ref Other", 27),
    ]
    read_only, admin, crud, inline, unknown, missing = policies
    assert read_only.managed == "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
    assert read_only.statements == ()
    assert admin.managed == "arn:aws:iam::aws:policy/AdministratorAccess"
    assert [(s.actions, s.resources) for s in admin.statements] == [(("*",), ("*",))]
    assert crud.template == "S3CrudPolicy"
    assert crud.statements[0].resources == ("arn:aws:s3:::${Bucket}", "arn:aws:s3:::${Bucket}/*")
    assert "s3:DeleteObject" in crud.statements[0].actions
    assert inline.statements[0].actions == ("iam:PassRole", "lambda:CreateFunction")
    assert inline.statements[0].line == 23
    assert unknown.unresolved[0].reason.startswith("not a SAM policy template")
    assert missing.unresolved[0].expression == "!Ref Other"


def test_a_policy_template_without_its_parameter_is_unresolved_not_empty() -> None:
    """A template parameter not given stays an unresolved resource of the statement."""
    text = SAM_POLICIES.replace("BucketName: !Ref Bucket", "Other: x")
    crud = _fn(text).policies[2]
    assert crud.statements[0].resources == ()
    assert "S3CrudPolicy.BucketName" in crud.statements[0].unresolved[0].reason


ROLE = """\
AWSTemplateFormatVersion: '2010-09-09'
Conditions:
  Extra: !Equals [a, b]
Resources:
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {}
      ManagedPolicyArns:
        - arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole
        - !Ref Managed
      Policies:
        - PolicyName: inline
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: s3:*
                Resource: !If [Extra, '*', arn:aws:s3:::b/*]
  Managed:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement: [{Effect: Allow, Action: sqs:*, Resource: '*'}]
  Attached:
    Type: AWS::IAM::Policy
    Properties:
      PolicyName: attached
      Roles: [!Ref Role]
      PolicyDocument:
        Statement:
          - Effect: Deny
            NotAction: logs:*
            Resource: '*'
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Role: !GetAtt Role.Arn
"""


def test_a_role_of_the_template_is_followed_to_every_policy_on_it() -> None:
    """Inline policies, managed ARNs (a template ManagedPolicy's content included) and
    an AWS::IAM::Policy attached through Roles; an Fn::If branch is conditional."""
    fn = _fn(ROLE)
    assert fn.role == Val.of("${Role.Arn}", 38)
    names = [p.name for p in fn.policies]
    assert names == ["inline", "AWSLambdaBasicExecutionRole", "Managed", "attached"]
    inline, basic, managed, attached = fn.policies
    assert inline.statements[0].resources == ("*", "arn:aws:s3:::b/*")
    assert inline.statements[0].conditional
    assert inline.statements[0].line == 16
    assert basic.managed.endswith("AWSLambdaBasicExecutionRole")
    assert managed.statements[0].actions == ("sqs:*",)
    assert attached.statements[0].effect is Effect.DENY
    assert attached.statements[0].not_actions == ("logs:*",)


FAILURES = (
    SAM
    + """\
Resources:
  Dlq:
    Type: AWS::SQS::Queue
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      DeadLetterQueue: {Type: SQS, TargetArn: !GetAtt Dlq.Arn}
      ReservedConcurrentExecutions: 5
      KmsKeyArn: !GetAtt Key.Arn
      LoggingConfig: {LogGroup: !Ref Logs}
  Key:
    Type: AWS::KMS::Key
  Logs:
    Type: AWS::Logs::LogGroup
    Properties:
      RetentionInDays: 14
  Dest:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      EventInvokeConfig:
        DestinationConfig:
          OnFailure: {Type: SQS}
  Raw:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Role: arn:aws:iam::1:role/r
      FunctionName: raw-fn
      TracingConfig: {Mode: PassThrough}
  RawConfig:
    Type: AWS::Lambda::EventInvokeConfig
    Properties:
      FunctionName: !Ref Raw
      Qualifier: $LATEST
      DestinationConfig:
        OnFailure: {Destination: !GetAtt Dlq.Arn}
  RawLogs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: /aws/lambda/raw-fn
      KmsKeyId: !GetAtt Key.Arn
"""
)


def test_dead_letters_concurrency_kms_tracing_and_log_groups() -> None:
    """Each property lands in the model; a log group is found by LoggingConfig or by
    the /aws/lambda/<name> convention; without one, Lambda's own (no retention)."""
    fn = _fn(FAILURES)
    assert fn.dead_letter == Val.of("${Dlq.Arn}", 10)
    assert fn.reserved_concurrency == Val.of(5, 11)
    assert fn.kms_key == Val.of("${Key.Arn}", 12)
    assert fn.log_group is not None
    assert fn.log_group.retention_days == Val.of(14, 19)
    dest = _fn(FAILURES, "Dest")
    assert dest.dead_letter.one == "SQS made by SAM"
    assert dest.log_group is not None
    assert not dest.log_group.retention_days.present
    raw = _fn(FAILURES, "Raw")
    assert raw.dead_letter == Val.of("${Dlq.Arn}", 40)
    assert raw.tracing == Val.of("PassThrough", 33)
    assert raw.log_group is not None
    assert raw.log_group.kms_key == Val.of("${Key.Arn}", 45)
    assert not raw.reserved_concurrency.present


PUBLIC = (
    SAM
    + """\
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      FunctionUrlConfig:
        AuthType: NONE
        Cors: {AllowOrigins: ['*']}
  Open:
    Type: AWS::Lambda::Permission
    Properties:
      FunctionName: !GetAtt Fn.Arn
      Action: lambda:InvokeFunction
      Principal: '*'
  FromBucket:
    Type: AWS::Lambda::Permission
    Properties:
      FunctionName: !Ref Fn
      Action: lambda:InvokeFunction
      Principal: s3.amazonaws.com
      SourceArn: arn:aws:s3:::my-bucket
      SourceAccount: '123456789012'
  Url:
    Type: AWS::Lambda::Url
    Properties:
      TargetFunctionArn: !Ref Fn
      AuthType: AWS_IAM
"""
)


def test_function_urls_and_permissions() -> None:
    """AuthType NONE is an unauthenticated URL; a permission to ``*`` without a source
    is a public statement; a service permission keeps its source conditions."""
    fn = _fn(PUBLIC)
    urls = [t for t in fn.triggers if t.kind is TriggerKind.FUNCTION_URL]
    assert [(t.auth.one, t.where.resource, t.where.line) for t in urls] == [
        ("none", "Fn", 8),
        ("aws_iam", "Url", 25),
    ]
    assert urls[0].auth.line == 9
    assert urls[0].cors_origins == Val.of("*", 10)
    public, service = fn.invoke_policy
    assert public.principals == ("*",)
    assert public.conditions == ()
    assert public.actions == ("lambda:InvokeFunction",)
    assert public.line == 16
    assert service.principals == ("service:s3.amazonaws.com",)
    assert service.conditions == (
        Condition("ArnLike", "AWS:SourceArn", ("arn:aws:s3:::my-bucket",)),
        Condition("StringEquals", "AWS:SourceAccount", ("123456789012",)),
    )


def test_a_conditional_resource_gives_conditional_values() -> None:
    """A function with a Condition may not exist: its values are conditional."""
    text = SAM + (
        "Conditions:\n  C: !Equals [a, b]\nResources:\n  Fn:\n"
        "    Type: AWS::Serverless::Function\n    Condition: C\n"
        "    Properties:\n      Runtime: python3.8\n"
    )
    assert _fn(text).runtime == Val(("python3.8",), (), 10, True)


def test_conditional_policies_and_environments_are_marked() -> None:
    """A policy list chosen by Fn::If and an environment map chosen by Fn::If give
    every branch's entries, each conditional."""
    text = SAM + (
        "Conditions:\n  C: !Equals [a, b]\nResources:\n  Fn:\n"
        "    Type: AWS::Serverless::Function\n    Properties:\n"
        "      Runtime: python3.12\n"
        "      Policies: !If [C, [AdministratorAccess], !Ref AWS::NoValue]\n"
        "      Environment:\n        Variables: !If [C, {A: '1'}, {B: '2'}]\n"
    )
    fn = _fn(text)
    assert [(p.name, p.conditional) for p in fn.policies] == [("AdministratorAccess", True)]
    assert fn.policies[0].statements[0].conditional
    assert [(e.name, e.value.one, e.value.conditional) for e in fn.environment] == [
        ("A", "1", True),
        ("B", "2", True),
    ]


def test_a_role_chosen_by_a_condition_brings_both_roles_policies() -> None:
    """Role: !If [C, A, B] follows both roles; each policy is conditional."""
    text = ROLE.replace("Role: !GetAtt Role.Arn", "Role: !If [Extra, !GetAtt Role.Arn, !Ref Other]")
    text += (
        "  Other:\n    Type: AWS::IAM::Role\n    Properties:\n"
        "      ManagedPolicyArns: [arn:aws:iam::aws:policy/AdministratorAccess]\n"
    )
    fn = _fn(text)
    assert fn.role.known == ("${Role.Arn}", "${Other}")
    assert fn.role.conditional
    assert [(p.name, p.conditional) for p in fn.policies][-1] == ("AdministratorAccess", True)
    assert all(p.conditional for p in fn.policies)
    assert len(fn.policies) == 5


def test_a_log_group_made_elsewhere_has_unknown_settings() -> None:
    """LoggingConfig naming a group not in the template: retention and key unresolved."""
    text = SAM + (
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        "      Runtime: python3.12\n      LoggingConfig: {LogGroup: shared-logs}\n"
    )
    group = _fn(text).log_group
    assert group is not None
    assert group.where.line == 8
    assert group.retention_days.unresolved[0].expression == "shared-logs"
    assert group.kms_key.unresolved[0].reason == "a log group made outside the template"


def test_a_role_arn_built_with_sub_is_followed() -> None:
    """Role: !Sub 'arn:aws:iam::${AWS::AccountId}:role/${Role}' follows the role."""
    text = ROLE.replace(
        "Role: !GetAtt Role.Arn", "Role: !Sub 'arn:aws:iam::${AWS::AccountId}:role/${Role}'"
    )
    fn = _fn(text)
    assert fn.role.one == "arn:aws:iam::${AWS::AccountId}:role/${Role}"
    assert [p.name for p in fn.policies] == [
        "inline",
        "AWSLambdaBasicExecutionRole",
        "Managed",
        "attached",
    ]
