"""Serverless events and APIs in the model: http/httpApi authorisation and CORS, function
URLs, asynchronous sources; resources.Resources read as CloudFormation; the format in
the scanner (malformed files a note)."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.scan.iac.catalog import formats
from donjon.scan.iac.model import App, TriggerKind, Val
from donjon.scan.iac.serverless import ServerlessFormat, read_text
from donjon.scan.project import discover

EVENTS = """\
service: shop
provider:
  name: aws
  logs:
    restApi: true
  httpApi:
    cors: true
    authorizers:
      jwtAuth:
        identitySource: $request.header.Authorization
        issuerUrl: https://issuer.example
      custom:
        type: request
        functionName: auth
functions:
  api:
    handler: a.h
    url:
      authorizer: aws_iam
    events:
      - http: GET /open
      - http:
          path: /iam
          method: post
          authorizer: aws_iam
      - http:
          path: /keyed
          method: get
          private: true
          cors: true
      - http:
          path: /pool
          method: get
          authorizer:
            arn: arn:aws:cognito-idp:eu-west-1:1:userpool/eu-west-1_x
      - httpApi: "GET /v2/open"
      - httpApi:
          path: /v2/jwt
          method: get
          authorizer:
            name: jwtAuth
      - httpApi:
          path: /v2/custom
          method: get
          authorizer:
            name: custom
      - httpApi:
          path: /v2/iam
          method: get
          authorizer:
            type: aws_iam
  jobs:
    handler: j.h
    url: true
    events:
      - s3: uploads
      - sqs: arn:aws:sqs:eu-west-1:1:q
      - sns: topic
      - schedule: rate(1 hour)
      - eventBridge:
          pattern: {source: [x]}
      - stream: arn:aws:dynamodb:eu-west-1:1:table/t/stream/1
      - websocket: $connect
"""


def _app(text: str) -> App:
    app = read_text("serverless.yml", text)
    assert isinstance(app, App)
    return app


def test_http_routes_carry_their_effective_authorisation() -> None:
    """No authorizer is public (none); aws_iam, a Cognito ARN, private: true (an API key),
    a JWT or request authorizer of provider.httpApi name their mechanism; each route
    sits at its event's line."""
    api = next(f for f in _app(EVENTS).functions if f.where.resource == "api")
    routes = [(t.kind, t.method, t.path, t.auth.known, t.where.line) for t in api.triggers]
    assert routes == [
        (TriggerKind.REST_API, "GET", "/open", ("none",), 21),
        (TriggerKind.REST_API, "post", "/iam", ("aws_iam",), 22),
        (TriggerKind.REST_API, "get", "/keyed", ("api_key",), 26),
        (TriggerKind.REST_API, "get", "/pool", ("cognito",), 31),
        (TriggerKind.HTTP_API, "GET", "/v2/open", ("none",), 36),
        (TriggerKind.HTTP_API, "get", "/v2/jwt", ("jwt",), 37),
        (TriggerKind.HTTP_API, "get", "/v2/custom", ("lambda",), 42),
        (TriggerKind.HTTP_API, "get", "/v2/iam", ("aws_iam",), 47),
        (TriggerKind.FUNCTION_URL, "", "", ("aws_iam",), 18),
    ]
    assert api.triggers[2].cors_origins == Val.of("*", 30)
    assert not api.triggers[0].cors_origins.present


def test_apis_have_access_logs_and_cors_from_the_provider() -> None:
    """The REST and HTTP APIs Serverless makes carry provider.logs and httpApi.cors."""
    apis = {a.where.resource: a for a in _app(EVENTS).apis}
    assert apis["ApiGatewayRestApi"].access_log == Val.of(True, 5)
    assert not apis["HttpApi"].access_log.present
    assert apis["HttpApi"].cors_origins == Val.of("*", 7)


def test_asynchronous_sources_and_a_public_url() -> None:
    """s3, sns, schedule and eventBridge are asynchronous; url: true is public."""
    jobs = next(f for f in _app(EVENTS).functions if f.where.resource == "jobs")
    assert [t.kind for t in jobs.triggers] == [
        TriggerKind.STORAGE,
        TriggerKind.QUEUE,
        TriggerKind.TOPIC,
        TriggerKind.SCHEDULE,
        TriggerKind.EVENT_BUS,
        TriggerKind.STREAM,
        TriggerKind.OTHER,
        TriggerKind.FUNCTION_URL,
    ]
    assert [t.asynchronous for t in jobs.triggers].count(True) == 4
    assert jobs.triggers[-1].auth.known == ("none",)


def test_an_unknown_http_api_authorizer_is_unresolved() -> None:
    """An authorizer name provider.httpApi does not declare is unknown, never safe."""
    text = (
        "service: s\nprovider:\n  name: aws\nfunctions:\n  f:\n    handler: h\n"
        "    events:\n      - httpApi:\n          path: /x\n          method: get\n"
        "          authorizer:\n            name: ghost\n"
    )
    auth = _app(text).functions[0].triggers[0].auth
    assert auth.known == ()
    assert auth.unresolved[0].expression == "authorizer ghost"


def test_resources_are_read_as_cloudformation() -> None:
    """Buckets, queues, log groups and user pools of resources.Resources are in the app,
    Serverless variables in them resolved."""
    text = (
        "service: shop\nprovider:\n  name: aws\nfunctions: {}\nresources:\n  Resources:\n"
        "    Files:\n      Type: AWS::S3::Bucket\n      Properties:\n"
        "        AccessControl: PublicRead\n        BucketName: ${self:service}-files\n"
        "    Jobs:\n      Type: AWS::SQS::Queue\n"
        "    Logs:\n      Type: AWS::Logs::LogGroup\n      Properties:\n"
        "        RetentionInDays: ${opt:days, 7}\n"
        "    Users:\n      Type: AWS::Cognito::UserPool\n"
    )
    app = _app(text)
    assert [(b.where.resource, b.where.line, b.acl.known) for b in app.buckets] == [
        ("Files", 7, ("public-read",))
    ]
    assert [q.kind for q in app.queues] == ["sqs"]
    assert app.log_groups[0].retention_days == Val.of(7, 17, conditional=True)
    assert [p.kind for p in app.user_pools] == ["user-pool"]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("serverless.yml", "service: s\nprovider: [\n"),
        ("serverless.json", '{"service": "s", "provider": {'),
        ("serverless.yaml", "service: s\nprovider: {name: aws}\nfunctions: !Bogus [a\n"),
    ],
)
def test_a_malformed_file_is_a_note(tmp_path: Path, name: str, text: str) -> None:
    """A service file that does not decode is a note naming it, no app, no exception."""
    (tmp_path / name).write_text(text)
    loaded = ServerlessFormat().load(discover(tmp_path))
    assert loaded.apps == ()
    assert len(loaded.notes) == 1
    assert loaded.notes[0].startswith(f"{name}: not a Serverless file that can be read")


ODD = [
    "service: s\nprovider: {name: aws, iam: {role: {statements: 5}}}\nfunctions: [1]\n",
    "service: s\nprovider: {name: aws, environment: [1]}\n"
    "functions: {f: {events: [1, {http: 5}, {httpApi: [x]}, {a: 1, b: 2}], environment: 3}}\n",
    "service: s\nprovider: {name: aws, httpApi: {cors: {allowedOrigins: 5}}}\n"
    "functions: {f: {url: {cors: [1]}, role: [1], destinations: 3, events: 4}}\n",
    "service: s\nprovider: {name: aws, iamManagedPolicies: 5, logs: 3, tracing: x}\n"
    "functions: {f: {iamRoleStatements: {a: b}, runtime: '${self:}'}}\nresources: 7\n",
]


@pytest.mark.parametrize("text", ODD)
def test_odd_shapes_never_raise(text: str) -> None:
    """Service files with keys of the wrong shape give a model, never an exception."""
    assert isinstance(read_text("serverless.yml", text), App)


def test_the_scanner_runs_the_serverless_format(tmp_path: Path) -> None:
    """The catalog's formats include Serverless; only files named serverless.* are read,
    and a YAML file with other content is not taken for one."""
    assert any(isinstance(f, ServerlessFormat) for f in formats())
    (tmp_path / "serverless.yml").write_text("service: s\nprovider: {name: aws}\n")
    (tmp_path / "other.yml").write_text("service: s\nprovider: {name: aws}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "serverless.yml").write_text("just: config\n")
    loaded = ServerlessFormat().load(discover(tmp_path))
    assert [a.path for a in loaded.apps] == ["serverless.yml"]
    assert loaded.notes == ()


def test_a_route_read_from_a_deploy_time_source_has_unresolved_auth() -> None:
    """An http or httpApi event whose whole body is ${file()} is not taken as public nor
    as protected: its authorisation is unresolved, naming the expression."""
    text = (
        "service: s\nprovider:\n  name: aws\nfunctions:\n  f:\n    handler: h\n"
        "    events:\n      - http: ${file(./routes.yml):orders}\n"
        "      - httpApi: ${env:ROUTE}\n"
    )
    triggers = _app(text).functions[0].triggers
    assert [t.auth.unresolved[0].expression for t in triggers] == [
        "${file(./routes.yml):orders}",
        "${env:ROUTE}",
    ]
    assert all(not t.auth.known for t in triggers)
