"""The triggers of a function: SAM ``Events``, function URLs, and the API Gateway
methods and routes of plain CloudFormation that integrate with it.

A route's ``auth`` is the effective one: the event's own ``Auth.Authorizer``, else
its API's ``DefaultAuthorizer`` (SAM ``Globals`` included), else ``api_key`` when a
key is required, ``resource_policy``/``private`` when the API's resource policy or
endpoint keeps it private, else ``none``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from donjon.scan.iac.cfn.apis import (
    IMPLICIT_HTTP,
    IMPLICIT_REST,
    authorizer_kind,
    cors_origins,
    default_auth,
    implicit_api,
)
from donjon.scan.iac.cfn.props import as_bool, as_str, child
from donjon.scan.iac.cfn.template import Resource, Template
from donjon.scan.iac.cfn.values import RMap, val
from donjon.scan.iac.model import Trigger, TriggerKind, Unresolved, Val

__all__ = ["api_triggers", "event_triggers", "url_triggers"]

_EVENT_KINDS = {
    "Api": TriggerKind.REST_API,
    "HttpApi": TriggerKind.HTTP_API,
    "S3": TriggerKind.STORAGE,
    "SQS": TriggerKind.QUEUE,
    "SNS": TriggerKind.TOPIC,
    "Schedule": TriggerKind.SCHEDULE,
    "ScheduleV2": TriggerKind.SCHEDULE,
    "EventBridgeRule": TriggerKind.EVENT_BUS,
    "CloudWatchEvent": TriggerKind.EVENT_BUS,
    "DynamoDB": TriggerKind.STREAM,
    "Kinesis": TriggerKind.STREAM,
    "MSK": TriggerKind.STREAM,
    "SelfManagedKafka": TriggerKind.STREAM,
    "MQ": TriggerKind.QUEUE,
    "DocumentDB": TriggerKind.STREAM,
}
_AUTHORIZATION_TYPES = {
    "NONE": "none",
    "AWS_IAM": "aws_iam",
    "CUSTOM": "lambda",
    "COGNITO_USER_POOLS": "cognito",
    "JWT": "jwt",
}
_FUNCTION_IN_URI = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.Arn)?\}")


def _api_of(
    template: Template, props: Mapping[str, object], kind: TriggerKind
) -> Resource | Unresolved:
    """The API a SAM event belongs to: one of the template, SAM's implicit one when it
    names none, or unresolved when it names one from elsewhere (its auth is unknown)."""
    key = "RestApiId" if kind is TriggerKind.REST_API else "ApiId"
    given = props.get(key)
    if given is None:
        return implicit_api(template, kind)
    if isinstance(given, str) and given.startswith("${") and given[2:-1] in template.resources:
        return template.resources[given[2:-1]]
    if isinstance(given, Unresolved):
        return given
    return Unresolved(str(given), f"{key} names an API outside the template")


def _route(template: Template, function: Resource, at: int, event: RMap) -> Trigger:
    kind = _EVENT_KINDS.get(str(event.get("Type")), TriggerKind.OTHER)
    props = event.get("Properties")
    props = props if isinstance(props, RMap) else RMap(event.line)
    where = function.where.at(at or event.line)
    if kind not in (TriggerKind.REST_API, TriggerKind.HTTP_API):
        return Trigger(kind, where)
    api = _api_of(template, props, kind)
    if isinstance(api, Unresolved):
        outside = Val[str]((), (api,), where.line, function.conditional)
        method, path = props.get("Method"), props.get("Path")
        return Trigger(
            kind,
            where,
            auth=outside,
            method=method.upper() if isinstance(method, str) else "ANY",
            path=path if isinstance(path, str) else "$default",
            cors_origins=outside,
            api=api.expression,
        )
    authorizer, line = child(props, "Auth", "Authorizer")
    if authorizer is not None:
        auth: Val[str] = val(
            authorizer,
            line,
            lambda v: authorizer_kind(api, v) if isinstance(v, str) else None,
            conditional=function.conditional,
            what="Auth.Authorizer",
        )
    else:
        auth = default_auth(api)
        key_required, key_line = child(props, "Auth", "ApiKeyRequired")
        if auth.one == "none" and as_bool(key_required):
            auth = Val.of("api_key", key_line, conditional=function.conditional)
        elif auth.one == "none":
            auth = Val.of("none", where.line, conditional=function.conditional or auth.conditional)
    cors, cors_line = child(
        api.properties, "Cors" if kind is TriggerKind.REST_API else "CorsConfiguration"
    )
    method = props.get("Method")
    path = props.get("Path")
    return Trigger(
        kind,
        where,
        auth=auth,
        method=method.upper() if isinstance(method, str) else "ANY",
        path=path if isinstance(path, str) else "$default",
        cors_origins=cors_origins(cors, cors_line, api.conditional),
        api=api.name,
    )


def event_triggers(
    template: Template, function: Resource
) -> tuple[tuple[Trigger, ...], set[TriggerKind]]:
    """A SAM function's ``Events``, and which implicit APIs they use."""
    events = function.properties.get("Events")
    triggers: list[Trigger] = []
    implicit: set[TriggerKind] = set()
    if not isinstance(events, Mapping):
        return (), implicit
    for name, event in events.items():
        if isinstance(event, RMap):
            line = events.line_of(str(name)) if isinstance(events, RMap) else event.line
            trigger = _route(template, function, line, event)
            triggers.append(trigger)
            if trigger.api in (IMPLICIT_REST, IMPLICIT_HTTP):
                implicit.add(trigger.kind)
    return tuple(triggers), implicit


def url_triggers(template: Template, function: Resource) -> tuple[Trigger, ...]:
    """A function URL: SAM's ``FunctionUrlConfig`` or an ``AWS::Lambda::Url`` on it."""
    configs: list[tuple[Resource, RMap, int]] = []
    own, line = child(function.properties, "FunctionUrlConfig")
    if isinstance(own, RMap):
        configs.append((function, own, line))
    for url in template.of_type("AWS::Lambda::Url"):
        target = url.properties.get("TargetFunctionArn")
        if target in ("${" + function.name + "}", "${" + function.name + ".Arn}"):
            configs.append((url, url.properties, url.where.line))
    triggers = []
    for owner, config, at in configs:
        auth_type, auth_line = child(config, "AuthType")
        auth = val(
            auth_type,
            auth_line or at,
            lambda v: (
                _AUTHORIZATION_TYPES.get(v.upper(), v.lower()) if isinstance(v, str) else None
            ),
            conditional=owner.conditional,
            what="AuthType",
        )
        cors, cors_line = child(config, "Cors")
        triggers.append(
            Trigger(
                TriggerKind.FUNCTION_URL,
                owner.where.at(at),
                auth=auth,
                cors_origins=cors_origins(cors, cors_line, owner.conditional),
            )
        )
    return tuple(triggers)


def _integrated(template: Template, uri: object) -> str:
    """The function a Lambda integration's URI invokes."""
    for match in _FUNCTION_IN_URI.finditer(uri if isinstance(uri, str) else ""):
        found = template.resources.get(match.group(1))
        if found is not None and found.type in (
            "AWS::Lambda::Function",
            "AWS::Serverless::Function",
        ):
            return found.name
    return ""


def api_triggers(template: Template) -> dict[str, list[Trigger]]:
    """Plain CloudFormation methods (v1) and routes (v2), by the function they invoke."""
    out: dict[str, list[Trigger]] = {}
    for method in template.of_type("AWS::ApiGateway::Method"):
        uri, _ = child(method.properties, "Integration", "Uri")
        target = _integrated(template, uri)
        if not target:
            continue
        kind, line = child(method.properties, "AuthorizationType")
        auth = val(
            kind if kind is not None else "NONE",
            line or method.where.line,
            _auth_type,
            conditional=method.conditional,
        )
        if auth.one == "none" and as_bool(method.properties.get("ApiKeyRequired")):
            auth = Val.of("api_key", method.properties.line_of("ApiKeyRequired"))
        http = as_str(method.properties.get("HttpMethod")) or "ANY"
        api = str(method.properties.get("RestApiId", "")).strip("${}")
        trigger = Trigger(
            TriggerKind.REST_API, method.where, auth=auth, method=http.upper(), api=api
        )
        out.setdefault(target, []).append(trigger)
    for route in template.of_type("AWS::ApiGatewayV2::Route"):
        integration = template.resources.get(
            str(route.properties.get("Target", "")).rsplit("/", 1)[-1].strip("${}")
        )
        uri = integration.properties.get("IntegrationUri") if integration is not None else None
        target = _integrated(template, uri)
        if not target:
            continue
        kind, line = child(route.properties, "AuthorizationType")
        auth = val(
            kind if kind is not None else "NONE",
            line or route.where.line,
            _auth_type,
            conditional=route.conditional,
        )
        key = str(route.properties.get("RouteKey", "$default"))
        http, _, path = key.partition(" ")
        api = str(route.properties.get("ApiId", "")).strip("${}")
        trigger = Trigger(
            TriggerKind.HTTP_API,
            route.where,
            auth=auth,
            method=http if path else "ANY",
            path=path or key,
            api=api,
        )
        out.setdefault(target, []).append(trigger)
    return out


def _auth_type(value: object) -> str | None:
    return (
        _AUTHORIZATION_TYPES.get(value.upper(), value.lower()) if isinstance(value, str) else None
    )
