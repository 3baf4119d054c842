"""Serverless functions in the model: provider defaults under the function's own
values, both IAM syntaxes (provider.iam.role and the legacy keys), per-function roles,
failure destinations, concurrency, KMS, tracing and log retention."""

from __future__ import annotations

from donjon.scan.iac.model import App, Effect, Function, Val
from donjon.scan.iac.serverless import read_text

DEFAULTS = """\
service: shop
provider:
  name: aws
  runtime: python3.12
  kmsKeyArn: arn:aws:kms:eu-west-1:1:key/provider
  logRetentionInDays: 14
  tracing:
    lambda: true
functions:
  plain:
    handler: plain.h
  own:
    handler: own.h
    runtime: python3.9
    kmsKeyArn: arn:aws:kms:eu-west-1:1:key/own
    logRetentionInDays: 90
    tracing: PassThrough
    reservedConcurrency: 5
    onError: arn:aws:sns:eu-west-1:1:dlq
  dest:
    handler: dest.h
    disableLogs: true
    destinations:
      onFailure: arn:aws:sqs:eu-west-1:1:failed
"""


def _app(text: str) -> App:
    app = read_text("serverless.yml", text)
    assert isinstance(app, App)
    return app


def _fn(text: str, name: str) -> Function:
    return next(f for f in _app(text).functions if f.where.resource == name)


def test_provider_values_apply_where_the_function_has_none() -> None:
    """runtime, kmsKeyArn, tracing.lambda and logRetentionInDays of the provider hold for
    a function without its own, pointing at the provider's lines."""
    plain = _fn(DEFAULTS, "plain")
    assert plain.where.line == 10
    assert plain.runtime == Val.of("python3.12", 4)
    assert plain.kms_key == Val.of("arn:aws:kms:eu-west-1:1:key/provider", 5)
    assert plain.tracing == Val.of("Active", 8)
    assert plain.log_group is not None
    assert plain.log_group.retention_days == Val.of(14, 6)
    assert not plain.dead_letter.present
    assert not plain.reserved_concurrency.present


def test_the_function_s_own_values_win() -> None:
    """A function's runtime, key, tracing, retention beat the provider's; onError is its
    dead-letter target, reservedConcurrency its cap."""
    own = _fn(DEFAULTS, "own")
    assert own.runtime == Val.of("python3.9", 14)
    assert own.kms_key == Val.of("arn:aws:kms:eu-west-1:1:key/own", 15)
    assert own.tracing == Val.of("PassThrough", 17)
    assert own.log_group is not None
    assert own.log_group.retention_days == Val.of(90, 16)
    assert own.reserved_concurrency == Val.of(5, 18)
    assert own.dead_letter == Val.of("arn:aws:sns:eu-west-1:1:dlq", 19)


def test_on_failure_destination_and_disabled_logs() -> None:
    """destinations.onFailure is a dead-letter target; disableLogs leaves no log group."""
    dest = _fn(DEFAULTS, "dest")
    assert dest.dead_letter == Val.of("arn:aws:sqs:eu-west-1:1:failed", 24)
    assert dest.log_group is None


CURRENT = """\
service: shop
provider:
  name: aws
  iam:
    role:
      statements:
        - Effect: Allow
          Action: "*"
          Resource: "*"
        - Effect: Deny
          Action: s3:DeleteBucket
          Resource: !GetAtt Bucket.Arn
      managedPolicies:
        - arn:aws:iam::aws:policy/AmazonS3FullAccess
functions:
  fn:
    handler: a.h
resources:
  Resources:
    Bucket:
      Type: AWS::S3::Bucket
"""

LEGACY = """\
service: shop
provider:
  name: aws
  iamRoleStatements:
    - Effect: Allow
      Action: "*"
      Resource: "*"
  iamManagedPolicies:
    - arn:aws:iam::aws:policy/AmazonS3FullAccess
functions:
  fn:
    handler: a.h
"""


def test_current_iam_syntax_is_read() -> None:
    """provider.iam.role.statements and managedPolicies are the default role's policies,
    each statement at its own line; !GetAtt resolves to the resource's ARN."""
    fn = _fn(CURRENT, "fn")
    assert fn.role.known == ("IamRoleLambdaExecution",)
    statements = fn.policies[0].statements
    assert [(s.effect, s.line, s.actions) for s in statements] == [
        (Effect.ALLOW, 7, ("*",)),
        (Effect.DENY, 10, ("s3:DeleteBucket",)),
    ]
    assert statements[1].resources == ("${Bucket.Arn}",)
    assert fn.policies[1].managed == "arn:aws:iam::aws:policy/AmazonS3FullAccess"
    assert fn.policies[1].line == 14


def test_legacy_iam_syntax_is_read_the_same() -> None:
    """provider.iamRoleStatements and iamManagedPolicies give the same policies."""
    fn = _fn(LEGACY, "fn")
    assert [(s.line, s.actions, s.resources) for s in fn.policies[0].statements] == [
        (5, ("*",), ("*",))
    ]
    assert fn.policies[1].managed == "arn:aws:iam::aws:policy/AmazonS3FullAccess"
    assert fn.policies[1].line == 9


ROLES = """\
service: shop
provider:
  name: aws
  iam:
    role: ${env:ROLE_ARN}
  iamRoleStatements:
    - Effect: Allow
      Action: s3:GetObject
      Resource: arn:aws:s3:::b/*
functions:
  inherits:
    handler: a.h
  named:
    handler: b.h
    role: AppRole
  arn:
    handler: c.h
    role: arn:aws:iam::111122223333:role/ext
  own:
    handler: d.h
    iamRoleStatements:
      - Effect: Allow
        Action: sqs:SendMessage
        Resource: arn:aws:sqs:eu-west-1:1:q
  both:
    handler: e.h
    iamRoleStatementsInherit: true
    iamRoleStatements:
      - Effect: Allow
        Action: sqs:SendMessage
        Resource: arn:aws:sqs:eu-west-1:1:q
resources:
  Resources:
    AppRole:
      Type: AWS::IAM::Role
      Properties:
        Policies:
          - PolicyName: app
            PolicyDocument:
              Statement:
                - Effect: Allow
                  Action: dynamodb:*
                  Resource: "*"
"""


def test_roles_given_by_name_arn_expression_or_per_function() -> None:
    """provider.iam.role as an expression is unresolved; a function's role wins (a role of
    resources with its policies, or an ARN); per-function iamRoleStatements make the
    function's own role, with the provider's statements only when inherited."""
    app = _app(ROLES)
    fns = {f.where.resource: f for f in app.functions}
    inherits = fns["inherits"]
    assert inherits.role.unresolved[0].expression == "${env:ROLE_ARN}"
    assert inherits.role.line == 5
    assert fns["named"].role == Val.of("AppRole", 15)
    assert fns["named"].policies[0].statements[0].actions == ("dynamodb:*",)
    assert fns["arn"].role == Val.of("arn:aws:iam::111122223333:role/ext", 18)
    assert fns["arn"].policies == ()
    own = [s.actions for p in fns["own"].policies for s in p.statements]
    assert own == [("sqs:SendMessage",)]
    both = [s.actions for p in fns["both"].policies for s in p.statements]
    assert both == [("sqs:SendMessage",), ("s3:GetObject",)]


def test_literals_outside_environments_are_seen_with_their_owner() -> None:
    """custom, provider, functions and resources strings are App.literals at their lines,
    named by function key or logical id; environments are not (they are in the model)."""
    text = (
        "service: s\ncustom:\n  token: abc\nprovider:\n  name: aws\n  environment:\n"
        "    A: in-env\nfunctions:\n  fn:\n    handler: a.h\n    environment:\n"
        "      B: in-env\nresources:\n  Resources:\n    Db:\n      Type: AWS::RDS::DBInstance\n"
        "      Properties:\n        MasterUserPassword: hunter2hunter2\n"
    )
    seen = {(w.resource, w.line, path, value) for w, path, value in _app(text).literals}
    assert ("custom", 3, "custom.token", "abc") in seen
    assert ("fn", 10, "functions.fn.handler", "a.h") in seen
    assert (
        "Db",
        18,
        "resources.Resources.Db.Properties.MasterUserPassword",
        "hunter2hunter2",
    ) in seen
    assert not any(value == "in-env" for *_, value in seen)


def test_roles_of_resources_by_name_and_by_getatt() -> None:
    """provider.iam.role naming a role of resources, and a function's !GetAtt Role.Arn,
    bring that role's managed and inline policies, at their lines in resources."""
    text = (
        "service: s\nprovider:\n  name: aws\n  iam:\n    role: AppRole\nfunctions:\n"
        "  a:\n    handler: h\n    role: !GetAtt OtherRole.Arn\n  b:\n    handler: h\n"
        "resources:\n  Resources:\n    AppRole:\n      Type: AWS::IAM::Role\n"
        "      Properties:\n"
        "        ManagedPolicyArns: [arn:aws:iam::aws:policy/AdministratorAccess]\n"
        "    OtherRole:\n      Type: AWS::IAM::Role\n      Properties:\n        Policies:\n"
        "          - PolicyName: p\n            PolicyDocument:\n"
        "              Statement: [{Effect: Allow, Action: 's3:*', Resource: '*'}]\n"
    )
    fns = {f.where.resource: f for f in _app(text).functions}
    assert fns["a"].role == Val.of("${OtherRole.Arn}", 9)
    assert [(p.name, p.line) for p in fns["a"].policies] == [("p", 22)]
    assert fns["b"].role == Val.of("AppRole", 5)
    assert [(p.name, p.line) for p in fns["b"].policies] == [("AdministratorAccess", 17)]


def test_default_name_and_container_image_functions() -> None:
    """A function's name defaults to <service>-<stage>-<key> (the stage may be overridden:
    conditional); a container image function inherits no runtime."""
    text = (
        "service: shop\nprovider:\n  name: aws\n  stage: ${opt:stage, 'prod'}\n"
        "  runtime: python3.12\n"
        "functions:\n  zip:\n    handler: a.h\n  image:\n    image: 1.dkr.ecr/x:latest\n"
    )
    fns = {f.where.resource: f for f in _app(text).functions}
    assert fns["zip"].name == Val.of("shop-prod-zip", 7, conditional=True)
    assert fns["zip"].runtime == Val.of("python3.12", 5)
    assert not fns["image"].runtime.present
