"""A Serverless function's ``events`` read into `Trigger`s, with the effective
authorisation of its HTTP routes.

``http`` (API Gateway REST): an ``authorizer`` (``aws_iam``, a Cognito pool ARN or
``COGNITO_USER_POOLS``, a Lambda authorizer by name or ARN) names its mechanism;
``private: true`` is ``api_key``; neither is ``none`` (public). ``cors: true`` allows
``*``. ``httpApi`` (API Gateway v2): ``authorizer.type: aws_iam``, or a name from
``provider.httpApi.authorizers`` (``jwt`` unless its ``type`` is ``request``:
``lambda``), or an ``id``; none is public. Its CORS is the API's
(``provider.httpApi.cors``), carried by the `HttpApi`. ``url``: ``authorizer:
aws_iam`` or public. ``alb`` listeners with no ``authorizer`` depend on whether the
load balancer faces the internet, which the file does not say: unresolved.
"""

from __future__ import annotations

from collections.abc import Mapping

from donjon.scan.iac.cfn.props import as_bool, as_str, child
from donjon.scan.iac.cfn.values import RList, RMap, options, val
from donjon.scan.iac.model import Trigger, TriggerKind, Unresolved, Val, Where

__all__ = ["build_triggers", "cors_credentials", "cors_origins", "url_trigger"]

_KINDS = {
    "s3": TriggerKind.STORAGE,
    "sqs": TriggerKind.QUEUE,
    "activemq": TriggerKind.QUEUE,
    "rabbitmq": TriggerKind.QUEUE,
    "sns": TriggerKind.TOPIC,
    "schedule": TriggerKind.SCHEDULE,
    "eventBridge": TriggerKind.EVENT_BUS,
    "cloudwatchEvent": TriggerKind.EVENT_BUS,
    "stream": TriggerKind.STREAM,
    "kafka": TriggerKind.STREAM,
    "msk": TriggerKind.STREAM,
}


def _mechanism(value: object) -> str | None:
    """An ``http`` authorizer's kind, from its name, ARN or mapping."""
    if isinstance(value, Mapping):
        kind = as_str(value.get("type"))
        if kind is not None:
            lowered = kind.lower()
            if lowered == "aws_iam":
                return "aws_iam"
            if "cognito" in lowered:
                return "cognito"
            return "lambda"
        arn = value.get("arn")
        value = arn if arn is not None else value.get("name", "lambda")
    text = as_str(value)
    if text is None:
        return None
    if text.lower() == "aws_iam":
        return "aws_iam"
    return "cognito" if "cognito-idp" in text else "lambda"


def _route(spec: object) -> tuple[str, str]:
    """Method and path of ``GET /users`` or of a mapping with ``method``/``path``."""
    if isinstance(spec, str):
        method, _, path = spec.strip().partition(" ")
        return (method, path) if path else ("*", method)
    if isinstance(spec, Mapping):
        return str(spec.get("method", "*")), str(spec.get("path", ""))
    return "", ""


def _http(spec: object, where: Where, conditional: bool) -> Trigger:
    method, path = _route(spec)
    body = spec if isinstance(spec, RMap) else RMap(where.line)
    if isinstance(spec, Unresolved):  # the whole event from ${file()}, ${env:}...
        auth: Val[str] = Val((), (spec,))
    elif "authorizer" in body:
        auth = val(
            body["authorizer"],
            body.line_of("authorizer"),
            _mechanism,
            conditional=conditional,
            what="authorizer",
        )
    elif any(o is True for o, _ in options(_bool(body.get("private")))):
        auth = Val.of("api_key", body.line_of("private"), conditional=conditional)
    else:
        auth = Val.of("none", conditional=conditional)
    cors = body.get("cors")
    origins = cors_origins(cors, body.line_of("cors"), conditional)
    return Trigger(
        TriggerKind.REST_API,
        where,
        auth,
        method,
        path,
        origins,
        "ApiGatewayRestApi",
        cors_credentials(cors, body.line_of("cors")),
    )


def _bool(value: object) -> object:
    converted = as_bool(value)
    return value if converted is None else converted


def cors_origins(cors: object, line: int, conditional: bool) -> Val[str]:
    """``cors: true`` is ``*``; a mapping's ``origin``/``origins``/``allowedOrigins``."""
    if cors is None or as_bool(cors) is False:
        return Val()
    if as_bool(cors) is True:
        return Val.of("*", line, conditional=conditional)
    if isinstance(cors, Mapping):
        for key in ("origin", "origins", "allowedOrigins", "allowOrigins"):
            if key in cors:
                found = cors[key]
                at = cors.line_of(key) if isinstance(cors, RMap) else line
                items = found if isinstance(found, list) else [found]
                vals = [val(i, at, as_str, conditional=conditional) for i in items]
                return Val(
                    tuple(k for v in vals for k in v.known),
                    tuple(u for v in vals for u in v.unresolved),
                    at,
                    any(v.conditional for v in vals),
                )
        return Val.of("*", line, conditional=conditional)  # Serverless's default origin
    return val(cors, line, _origin, conditional=conditional, what="cors")


def _origin(value: object) -> str | None:
    """One branch of a conditional ``cors``: ``true`` is ``*``, ``false`` no origin."""
    flag = as_bool(value)
    if flag is not None:
        return "*" if flag else ""
    return as_str(value)


def cors_credentials(cors: object, line: int) -> Val[bool]:
    if isinstance(cors, Mapping):
        for key in ("allowCredentials", "credentials"):
            if key in cors:
                return val(cors[key], line, as_bool, what="allowCredentials")
    return Val()


def _http_api(spec: object, where: Where, authorizers: RMap, conditional: bool) -> Trigger:
    method, path = _route(spec)
    auth: Val[str] = Val.of("none", conditional=conditional)
    if isinstance(spec, Unresolved):  # the whole event from ${file()}, ${env:}...
        auth = Val((), (spec,))
    elif isinstance(spec, RMap) and "authorizer" in spec:
        line = spec.line_of("authorizer")
        found = spec["authorizer"]
        name = found.get("name") if isinstance(found, Mapping) else found
        kind = as_str(found.get("type")) if isinstance(found, Mapping) else None
        if kind is not None and kind.lower() == "aws_iam":
            auth = Val.of("aws_iam", line, conditional=conditional)
        elif isinstance(found, Mapping) and "id" in found:
            auth = Val.of("jwt", line, conditional=conditional)
        else:
            declared = authorizers.get(str(name)) if name is not None else None
            if isinstance(declared, Mapping):
                lambda_ = str(declared.get("type", "jwt")).lower() == "request"
                auth = Val.of("lambda" if lambda_ else "jwt", line, conditional=conditional)
            else:
                auth = Val.unknown(
                    f"authorizer {name}", "not in provider.httpApi.authorizers", line
                )
    return Trigger(TriggerKind.HTTP_API, where, auth, method, path, api="HttpApi")


def _alb(spec: object, where: Where) -> Trigger:
    body = spec if isinstance(spec, RMap) else RMap()
    if "authorizer" in body:
        auth = Val.of("cognito", body.line_of("authorizer"))
    else:
        auth = Val.unknown(
            "alb", "an ALB listener: whether it faces the internet is not in the file"
        )
    conditions = body.get("conditions")
    path = ""
    if isinstance(conditions, Mapping):
        value = conditions.get("path")
        path = str(value[0] if isinstance(value, list) and value else value or "")
    return Trigger(TriggerKind.HTTP, where, auth, "", path)


def build_triggers(
    events: object, where: Where, authorizers: RMap, conditional: bool = False
) -> tuple[Trigger, ...]:
    """The triggers of a function's ``events`` list."""
    out: list[Trigger] = []
    items = events if isinstance(events, RList) else RList()
    for index, event in enumerate(items):
        if not isinstance(event, Mapping) or len(event) != 1:
            continue
        kind, spec = next(iter(event.items()))
        at = Where(where.path, items.line_at(index), where.resource)
        if kind == "http":
            out.append(_http(spec, at, conditional))
        elif kind == "httpApi":
            out.append(_http_api(spec, at, authorizers, conditional))
        elif kind == "alb":
            out.append(_alb(spec, at))
        else:
            out.append(Trigger(_KINDS.get(str(kind), TriggerKind.OTHER), at))
    return tuple(out)


def url_trigger(url: object, line: int, where: Where) -> Trigger | None:
    """A function URL: ``url: true`` (public) or a mapping (``authorizer: aws_iam``)."""
    if url is None or as_bool(url) is False:
        return None
    at = Where(where.path, line, where.resource)
    if isinstance(url, Mapping):
        authorizer, auth_line = child(url, "authorizer")
        auth = (
            Val.of("aws_iam", auth_line)
            if as_str(authorizer) == "aws_iam"
            else Val.of("none", auth_line)
        )
        cors = url.get("cors")
        at_cors = url.line_of("cors") if isinstance(url, RMap) else line
        return Trigger(
            TriggerKind.FUNCTION_URL,
            at,
            auth,
            cors_origins=cors_origins(cors, at_cors, False),
            cors_credentials=cors_credentials(cors, at_cors),
        )
    return Trigger(TriggerKind.FUNCTION_URL, at, Val.of("none"))
