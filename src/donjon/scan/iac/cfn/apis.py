"""API Gateway front doors of a template (REST and HTTP APIs), and how a route's
authorisation is decided from the API's defaults.

SAM's ``AWS::Serverless::Api``/``HttpApi`` (``Globals`` merged), the implicit
``ServerlessRestApi``/``ServerlessHttpApi`` SAM makes for events without an API
(configured by ``Globals.Api``/``Globals.HttpApi`` alone), and the plain
``AWS::ApiGateway::RestApi``/``AWS::ApiGatewayV2::Api`` with their stages.
"""

from __future__ import annotations

from collections.abc import Mapping

from donjon.scan.iac.cfn.props import as_bool, child, prop
from donjon.scan.iac.cfn.template import Resource, Template
from donjon.scan.iac.cfn.values import RMap, options, val
from donjon.scan.iac.model import HttpApi, TriggerKind, Unresolved, Val, Where

__all__ = [
    "IMPLICIT_HTTP",
    "IMPLICIT_REST",
    "authorizer_kind",
    "build_apis",
    "cors_origins",
    "implicit_api",
]

IMPLICIT_REST = "ServerlessRestApi"
IMPLICIT_HTTP = "ServerlessHttpApi"
_KINDS = {
    "AWS::Serverless::Api": TriggerKind.REST_API,
    "AWS::ApiGateway::RestApi": TriggerKind.REST_API,
    "AWS::Serverless::HttpApi": TriggerKind.HTTP_API,
    "AWS::ApiGatewayV2::Api": TriggerKind.HTTP_API,
}
_RESTRICTING = ("AwsAccountWhitelist", "IpRangeWhitelist", "SourceVpcWhitelist")
_RESTRICTING_VPC = ("IntrinsicVpcWhitelist", "IntrinsicVpceWhitelist")


def implicit_api(template: Template, kind: TriggerKind) -> Resource:
    """The API SAM makes for events that name none, configured by ``Globals`` alone."""
    section = "Api" if kind is TriggerKind.REST_API else "HttpApi"
    name = IMPLICIT_REST if kind is TriggerKind.REST_API else IMPLICIT_HTTP
    found = template.globals_.get(section)
    properties = found if isinstance(found, RMap) else RMap()
    line = template.globals_.line_of(section) if section in template.globals_ else 0
    kind_name = (
        "AWS::Serverless::Api" if kind is TriggerKind.REST_API else "AWS::Serverless::HttpApi"
    )
    where = Where(template.path, line or _first_event(template, section), name)
    return Resource(name, kind_name, where, properties, {}, False)


def _first_event(template: Template, section: str) -> int:
    """The line of the first event that makes SAM create the implicit API (1 if none)."""
    key = "RestApiId" if section == "Api" else "ApiId"
    for function in template.of_type("AWS::Serverless::Function"):
        events = function.properties.get("Events")
        if not isinstance(events, RMap):
            continue
        for name, event in events.items():
            props = event.get("Properties") if isinstance(event, Mapping) else None
            uses = not isinstance(props, Mapping) or key not in props
            if isinstance(event, Mapping) and event.get("Type") == section and uses:
                return events.line_of(str(name))
    return 1


def authorizer_kind(api: Resource, name: str) -> str:
    """The mechanism an authorizer named in a SAM route or default stands for."""
    if name.upper() == "NONE":
        return "none"
    if name.upper() == "AWS_IAM":
        return "aws_iam"
    spec, _ = child(api.properties, "Auth", "Authorizers", name)
    if isinstance(spec, Mapping):
        if "JwtConfiguration" in spec:
            return "jwt"
        if "UserPoolArn" in spec:
            return "cognito"
        if "FunctionArn" in spec:
            return "lambda"
    return "lambda" if spec is not None else f"unknown authorizer {name}"


def default_auth(api: Resource) -> Val[str]:
    """The authorisation of a route of `api` that names none itself."""
    auth = api.properties.get("Auth")
    line = api.properties.line_of("Auth")
    if isinstance(auth, Mapping):
        default, at = child(auth, "DefaultAuthorizer")
        if default is not None:
            return val(
                default,
                at,
                lambda v: authorizer_kind(api, str(v)) if isinstance(v, str) else None,
                conditional=api.conditional,
                what="DefaultAuthorizer",
            )
        if as_bool(auth.get("ApiKeyRequired")):
            return Val.of("api_key", line, conditional=api.conditional)
        policy = auth.get("ResourcePolicy")
        if isinstance(policy, Mapping) and any(
            k in policy for k in (*_RESTRICTING, *_RESTRICTING_VPC)
        ):
            return Val.of("resource_policy", line, conditional=api.conditional)
    endpoint, at = child(api.properties, "EndpointConfiguration", "Type")
    if endpoint is None:
        endpoint, at = child(api.properties, "EndpointConfiguration")
    if isinstance(endpoint, str) and endpoint.upper() == "PRIVATE":
        return Val.of("private", at, conditional=api.conditional)
    for key in ("DefinitionBody", "DefinitionUri"):
        if key in api.properties:
            # Its OpenAPI security schemes may protect the routes: not read, so not "none".
            why = "the API's OpenAPI definition may set its authorisation (not read)"
            return Val[str]((), (Unresolved(key, why),), api.properties.line_of(key))
    return Val.of("none", line or api.where.line, conditional=api.conditional)


def cors_origins(source: object, line: int, conditional: bool) -> Val[str]:
    """The origins a CORS setting allows: SAM's ``Cors`` (a quoted string or
    ``AllowOrigin``), HTTP APIs' ``CorsConfiguration`` (``true`` is any origin) or
    ``AllowOrigins``/``AllowedOrigins`` lists."""
    known: list[str] = []
    unknown: list[Unresolved] = []
    cond = conditional
    for option, branch in options(source):
        cond = cond or branch
        if option is True or (isinstance(option, str) and option.lower() == "true"):
            known.append("*")
        elif isinstance(option, str):
            known.append(option.strip("'\""))
        elif isinstance(option, Unresolved):
            unknown.append(option)
        elif isinstance(option, Mapping):
            for key in ("AllowOrigin", "AllowOrigins", "AllowedOrigins"):
                for item, inner in options(option.get(key)):
                    cond = cond or inner
                    for origin in item if isinstance(item, list) else [item]:
                        if isinstance(origin, str):
                            known.append(origin.strip("'\""))
                        elif isinstance(origin, Unresolved):
                            unknown.append(origin)
    return Val(tuple(dict.fromkeys(known)), tuple(unknown), line, cond)


def _stage_logging(template: Template, api: str) -> tuple[Val[bool], Val[bool]]:
    for stage in template.of_type("AWS::ApiGateway::Stage", "AWS::ApiGatewayV2::Stage"):
        if api in (stage.properties.get("RestApiId"), stage.properties.get("ApiId")):
            logs, line = child(stage.properties, "AccessLogSetting")
            if logs is None:
                logs, line = child(stage.properties, "AccessLogSettings")
            tracing = prop(stage, "TracingEnabled", convert=as_bool)
            return Val.of(logs is not None, line or stage.where.line), tracing
    return Val(), Val()


def build_apis(template: Template, implicit: set[TriggerKind]) -> tuple[HttpApi, ...]:
    """Every API of the template, the implicit ones used by events included."""
    apis: list[HttpApi] = []
    resources = [r for r in template.resources.values() if r.type in _KINDS]
    resources.extend(
        implicit_api(template, kind) for kind in sorted(implicit, key=lambda k: k.value)
    )
    for api in resources:
        kind = _KINDS[api.type]
        props = api.properties
        cors_value, cors_line = child(props, "Cors")
        if cors_value is None:
            cors_value, cors_line = child(props, "CorsConfiguration")
        logs, logs_line = (
            child(props, "AccessLogSetting")
            if kind is TriggerKind.REST_API
            else child(props, "AccessLogSettings")
        )
        access_log: Val[bool] = Val.of(
            logs is not None, logs_line or api.where.line, conditional=api.conditional
        )
        tracing = prop(api, "TracingEnabled", convert=as_bool)
        if not api.type.startswith("AWS::Serverless"):
            access_log, tracing = _stage_logging(template, "${" + api.name + "}")
        apis.append(
            HttpApi(
                api.where,
                kind,
                default_auth=default_auth(api) if api.type.startswith("AWS::Serverless") else Val(),
                cors_origins=cors_origins(cors_value, cors_line, api.conditional),
                access_log=access_log,
                tracing=tracing,
            )
        )
    return tuple(apis)
