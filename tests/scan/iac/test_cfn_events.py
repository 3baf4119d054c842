"""Triggers and APIs of SAM and CloudFormation templates: kinds, effective
authorisation, CORS and access logging."""

from __future__ import annotations

import pytest

from donjon.scan.iac.cfn import load_text
from donjon.scan.iac.model import App, Function, Trigger, TriggerKind, Val

SAM = "AWSTemplateFormatVersion: '2010-09-09'\nTransform: AWS::Serverless-2016-10-31\n"


def _app(text: str) -> App:
    app = load_text("template.yaml", text)
    assert isinstance(app, App)
    return app


def _fn(app: App, name: str = "Fn") -> Function:
    return next(f for f in app.functions if f.where.resource == name)


def _routes(fn: Function) -> dict[str, Trigger]:
    return {
        t.path: t for t in fn.triggers if t.kind in (TriggerKind.REST_API, TriggerKind.HTTP_API)
    }


EVENTS = (
    SAM
    + """\
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Events:
        Up: {Type: S3, Properties: {Bucket: !Ref B, Events: 's3:ObjectCreated:*'}}
        Jobs: {Type: SQS, Properties: {Queue: !GetAtt Q.Arn}}
        News: {Type: SNS, Properties: {Topic: !Ref T}}
        Tick: {Type: Schedule, Properties: {Schedule: rate(1 hour)}}
        Tock: {Type: ScheduleV2, Properties: {ScheduleExpression: rate(1 hour)}}
        Bus: {Type: EventBridgeRule, Properties: {Pattern: {source: [x]}}}
        Table: {Type: DynamoDB, Properties: {Stream: arn, StartingPosition: LATEST}}
        Kin: {Type: Kinesis, Properties: {Stream: arn, StartingPosition: LATEST}}
        Open: {Type: Api, Properties: {Path: /open, Method: get}}
  B: {Type: AWS::S3::Bucket}
  Q: {Type: AWS::SQS::Queue}
  T: {Type: AWS::SNS::Topic}
"""
)


@pytest.mark.slow
def test_each_event_type_is_its_trigger_kind_on_its_line() -> None:
    """S3, SQS, SNS, schedules, EventBridge, streams and APIs map to the model's kinds."""
    fn = _fn(_app(EVENTS))
    assert [(t.kind, t.where.line) for t in fn.triggers] == [
        (TriggerKind.STORAGE, 9),
        (TriggerKind.QUEUE, 10),
        (TriggerKind.TOPIC, 11),
        (TriggerKind.SCHEDULE, 12),
        (TriggerKind.SCHEDULE, 13),
        (TriggerKind.EVENT_BUS, 14),
        (TriggerKind.STREAM, 15),
        (TriggerKind.STREAM, 16),
        (TriggerKind.REST_API, 17),
    ]
    api = _routes(fn)["/open"]
    assert (api.method, api.api, api.auth) == ("GET", "ServerlessRestApi", Val.of("none", 17))
    implicit = _app(EVENTS).apis[0]
    assert (implicit.where.resource, implicit.where.line) == ("ServerlessRestApi", 17)


AUTH = (
    SAM
    + """\
Globals:
  Api:
    Auth:
      DefaultAuthorizer: Pool
      Authorizers:
        Pool: {UserPoolArn: arn:aws:cognito-idp:us-east-1:1:userpool/x}
    Cors:
      AllowOrigin: "'https://app.example.org'"
Resources:
  Keyed:
    Type: AWS::Serverless::Api
    Properties:
      StageName: prod
      Auth: {ApiKeyRequired: true}
      AccessLogSetting: {DestinationArn: arn, Format: x}
      TracingEnabled: true
  Http:
    Type: AWS::Serverless::HttpApi
    Properties:
      CorsConfiguration: true
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers:
          Jwt: {JwtConfiguration: {issuer: x, audience: [y]}, IdentitySource: $request.header.A}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Events:
        Default: {Type: Api, Properties: {Path: /default, Method: get}}
        Public: {Type: Api, Properties: {Path: /public, Method: get, Auth: {Authorizer: NONE}}}
        Iam: {Type: Api, Properties: {Path: /iam, Method: post, Auth: {Authorizer: AWS_IAM}}}
        Key: {Type: Api, Properties: {Path: /key, Method: get, RestApiId: !Ref Keyed}}
        Jwt: {Type: HttpApi, Properties: {Path: /jwt, Method: get, ApiId: !Ref Http}}
        Bare: {Type: HttpApi, Properties: {Path: /bare, Method: get}}
"""
)


def test_route_auth_follows_the_event_then_the_api_default() -> None:
    """A Globals default authorizer covers the implicit API's routes and an explicit API's
    (Globals.Api reaches both); NONE on the event opens a route; an HTTP API's JWT
    default applies, an implicit HTTP API without Globals has none."""
    routes = _routes(_fn(_app(AUTH)))
    assert {path: r.auth.known for path, r in routes.items()} == {
        "/default": ("cognito",),
        "/public": ("none",),
        "/iam": ("aws_iam",),
        "/key": ("cognito",),
        "/jwt": ("jwt",),
        "/bare": ("none",),
    }
    assert routes["/public"].auth.line == 33
    assert routes["/default"].cors_origins == Val.of("https://app.example.org", 9)
    assert routes["/jwt"].cors_origins == Val.of("*", 22)


def test_apis_carry_default_auth_cors_logging_and_tracing() -> None:
    """Explicit APIs and the implicit ones used by events, with their settings."""
    apis = {a.where.resource: a for a in _app(AUTH).apis}
    assert set(apis) == {"Keyed", "Http", "ServerlessRestApi", "ServerlessHttpApi"}
    keyed = apis["Keyed"]
    assert keyed.kind is TriggerKind.REST_API
    assert keyed.default_auth.one == "cognito"
    assert keyed.access_log == Val.of(True, 17)
    assert keyed.tracing == Val.of(True, 18)
    assert apis["ServerlessRestApi"].default_auth.one == "cognito"
    assert apis["ServerlessRestApi"].where.line == 4
    assert apis["ServerlessRestApi"].access_log.one is False
    assert apis["Http"].default_auth.one == "jwt"
    assert apis["ServerlessHttpApi"].default_auth.one == "none"


PLAIN = """\
AWSTemplateFormatVersion: '2010-09-09'
Resources:
  Fn:
    Type: AWS::Lambda::Function
    Properties: {Runtime: python3.12, Role: arn:aws:iam::1:role/r}
  Rest: {Type: AWS::ApiGateway::RestApi}
  Get:
    Type: AWS::ApiGateway::Method
    Properties:
      RestApiId: !Ref Rest
      HttpMethod: GET
      AuthorizationType: NONE
      Integration:
        Type: AWS_PROXY
        Uri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/functions/${Fn.Arn}/invocations
  Post:
    Type: AWS::ApiGateway::Method
    Properties:
      RestApiId: !Ref Rest
      HttpMethod: POST
      AuthorizationType: COGNITO_USER_POOLS
      Integration: {Uri: !Sub 'arn:aws:apigateway:r:lambda:path/functions/${Fn.Arn}/invocations'}
  Keyed:
    Type: AWS::ApiGateway::Method
    Properties:
      RestApiId: !Ref Rest
      HttpMethod: PUT
      ApiKeyRequired: true
      Integration: {Uri: !Sub 'arn:aws:apigateway:r:lambda:path/functions/${Fn.Arn}/invocations'}
  Stage:
    Type: AWS::ApiGateway::Stage
    Properties:
      RestApiId: !Ref Rest
      AccessLogSetting: {DestinationArn: arn}
  V2: {Type: AWS::ApiGatewayV2::Api, Properties: {ProtocolType: HTTP}}
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {ApiId: !Ref V2, IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt Fn.Arn}
  Route:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref V2
      RouteKey: GET /items
      Target: !Sub integrations/${Integration}
"""


def test_plain_methods_and_routes_reach_the_function_they_integrate() -> None:
    """A v1 method with AuthorizationType NONE and a v2 route without one are public;
    a Cognito method is not, nor one requiring an API key; the stage's access logs
    belong to its API."""
    app = _app(PLAIN)
    triggers = _fn(app).triggers
    assert [(t.kind, t.method, t.path, t.auth.one, t.where.resource) for t in triggers] == [
        (TriggerKind.REST_API, "GET", "", "none", "Get"),
        (TriggerKind.REST_API, "POST", "", "cognito", "Post"),
        (TriggerKind.REST_API, "PUT", "", "api_key", "Keyed"),
        (TriggerKind.HTTP_API, "GET", "/items", "none", "Route"),
    ]
    assert triggers[0].auth.line == 12
    apis = {a.where.resource: a for a in app.apis}
    assert apis["Rest"].access_log == Val.of(True, 34)
    assert not apis["V2"].access_log.present


PRIVATE = (
    SAM
    + """\
Resources:
  Keyed:
    Type: AWS::Serverless::Api
    Properties: {StageName: p, Auth: {ApiKeyRequired: true}}
  Walled:
    Type: AWS::Serverless::Api
    Properties:
      StageName: p
      Auth: {ResourcePolicy: {IpRangeWhitelist: [10.0.0.0/8]}}
  Inside:
    Type: AWS::Serverless::Api
    Properties: {StageName: p, EndpointConfiguration: {Type: PRIVATE}}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Events:
        A: {Type: Api, Properties: {Path: /a, Method: get, RestApiId: !Ref Keyed}}
        B: {Type: Api, Properties: {Path: /b, Method: get, RestApiId: !Ref Walled}}
        C: {Type: Api, Properties: {Path: /c, Method: get, RestApiId: !Ref Inside}}
        D: {Type: Api, Properties: {Path: /d, Method: get, Auth: {ApiKeyRequired: true}}}
        E: {Type: Api, Properties: {Path: /e, Auth: {Authorizer: !If [C, NONE, AWS_IAM]}}}
"""
)


def test_keys_resource_policies_and_private_endpoints_are_not_none() -> None:
    """An API requiring keys, one whose resource policy allow-lists addresses, a
    private endpoint, a route requiring a key: none is reported as unauthenticated; an
    authorizer chosen by a condition gives both, conditional."""
    routes = _routes(_fn(_app(PRIVATE)))
    assert {path: r.auth.known for path, r in routes.items()} == {
        "/a": ("api_key",),
        "/b": ("resource_policy",),
        "/c": ("private",),
        "/d": ("api_key",),
        "/e": ("none", "aws_iam"),
    }
    assert routes["/e"].auth.conditional
    assert not routes["/a"].auth.conditional


SOURCES = """\
AWSTemplateFormatVersion: '2010-09-09'
Resources:
  Fn:
    Type: AWS::Lambda::Function
    Properties: {Runtime: python3.12, Role: arn:aws:iam::1:role/r}
  Jobs: {Type: AWS::SQS::Queue}
  FromQueue:
    Type: AWS::Lambda::EventSourceMapping
    Properties: {FunctionName: !Ref Fn, EventSourceArn: !GetAtt Jobs.Arn}
  FromStream:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: !GetAtt Fn.Arn
      EventSourceArn: arn:aws:kinesis:us-east-1:123456789012:stream/s
  Quick:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      ProtocolType: HTTP
      Target: !GetAtt Fn.Arn
      CorsConfiguration: {AllowOrigins: ['*']}
"""


def test_event_source_mappings_and_quick_create_apis() -> None:
    """A mapping from a queue or a stream is its trigger kind; a quick-create HTTP API
    is a public $default route with its CORS."""
    triggers = _fn(_app(SOURCES)).triggers
    assert [(t.kind, t.where.resource, t.where.line) for t in triggers] == [
        (TriggerKind.QUEUE, "FromQueue", 7),
        (TriggerKind.STREAM, "FromStream", 10),
        (TriggerKind.HTTP_API, "Quick", 19),
    ]
    quick = triggers[2]
    assert (quick.auth, quick.path, quick.api) == (Val.of("none", 19), "$default", "Quick")
    assert quick.cors_origins == Val.of("*", 20)


def test_a_route_on_an_api_outside_the_template_has_unresolved_auth() -> None:
    """An event on an imported API: its auth and CORS are unresolved, never none."""
    text = SAM + (
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        "      Runtime: python3.12\n      Events:\n"
        "        Get: {Type: Api, Properties: {Path: /x, Method: get,"
        " RestApiId: !ImportValue shared-api}}\n"
    )
    route = _routes(_fn(_app(text)))["/x"]
    assert route.auth.known == ()
    assert route.auth.unresolved[0].expression == "!ImportValue shared-api"
    assert route.auth.line == 9
    assert route.api == "!ImportValue shared-api"


def test_an_api_defined_by_openapi_without_sam_auth_is_unresolved() -> None:
    """Security set in an OpenAPI body is not read: the routes' auth is unresolved."""
    text = SAM + (
        "Resources:\n  Api:\n    Type: AWS::Serverless::Api\n    Properties:\n"
        "      StageName: p\n      DefinitionUri: openapi.yaml\n"
        "  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        "      Runtime: python3.12\n      Events:\n"
        "        Get: {Type: Api, Properties: {Path: /x, Method: get, RestApiId: !Ref Api}}\n"
    )
    app = _app(text)
    route = _routes(_fn(app))["/x"]
    assert route.auth.known == ()
    assert route.auth.unresolved[0].expression == "DefinitionUri"
    assert route.auth.line == 8
    assert app.apis[0].default_auth == route.auth
