"""API Gateway's Lambda proxy integration, for http triggers with `event_format: apigw-v1|v2`.

In: the request as API Gateway's proxy event, payload format 1.0 (REST APIs) or 2.0
(HTTP APIs), so ASGI/WSGI adapters (Mangum) and aws-lambda-powertools' event
handlers take it unchanged. Out: the function's proxy response (`statusCode`,
`headers`, `multiValueHeaders`, `cookies`, `body`, `isBase64Encoded`) mapped back to
HTTP through the same response policy as every http trigger (`render_http`): the
function's worker maps it to a status, headers and content (sandbox/runtime/
httpresult.py), so the gateway's loop never parses its body.

The path a function sees is its trigger's path, without the gateway's `/fn` prefix
(as behind an API Gateway custom domain). The caller is `requestContext.authorizer`'s
`principalId` (format 1.0) or `lambda.principalId` (2.0), as a Lambda authorizer would
set it; public triggers have no authorizer. Credentials are removed as from Donjon's
own event (the caller gives them as `headers`).
"""

from __future__ import annotations

import base64
import time
from typing import Any, Literal

from starlette.requests import Request

__all__ = ["EventFormat", "apigw_event"]

EventFormat = Literal["apigw-v1", "apigw-v2"]

#: As in the ARN-like names the sandbox gives (sandbox/runtime/lambda_env.py).
_ACCOUNT = "000000000000"
_API_ID = "donjon"


def _body(body: bytes) -> tuple[str | None, bool]:
    if not body:
        return None, False
    try:
        return body.decode(), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), True


def _multi(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def _context_common(request: Request, request_id: str) -> dict[str, Any]:
    return {
        "accountId": _ACCOUNT,
        "apiId": _API_ID,
        "domainName": request.headers.get("host", ""),
        "domainPrefix": request.headers.get("host", "").split(".", 1)[0].split(":", 1)[0],
        "requestId": request_id,
        "extendedRequestId": request_id,
    }


def apigw_event(
    version: EventFormat,
    request: Request,
    path: str,
    route: str,
    headers: list[tuple[str, str]],
    body: bytes,
    principal: str | None,
    request_id: str,
) -> dict[str, Any]:
    """The proxy event of `request`, to encode (`event_json`); `path` as routed ("/x"),
    `route` the trigger's path, `headers` those the function may see (credentials already
    removed)."""
    now = time.time()
    text, encoded = _body(body)
    source = request.client.host if request.client else ""
    agent = request.headers.get("user-agent", "")
    query = list(request.query_params.multi_items())
    context = _context_common(request, request_id)
    event: dict[str, Any]
    if version == "apigw-v1":
        context.update(
            {
                "httpMethod": request.method,
                "path": path,
                "protocol": f"HTTP/{request.scope.get('http_version', '1.1')}",
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "requestTimeEpoch": int(now * 1000),
                "resourceId": route,
                "resourcePath": route,
                "stage": "$default",
                "identity": {"sourceIp": source, "userAgent": agent},
            }
        )
        if principal is not None:
            context["authorizer"] = {"principalId": principal}
        multi_headers = _multi(headers)
        multi_query = _multi(query)
        event = {
            "version": "1.0",
            "resource": route,
            "path": path,
            "httpMethod": request.method,
            "headers": {k: v[-1] for k, v in multi_headers.items()},
            "multiValueHeaders": multi_headers,
            "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": None,
            "stageVariables": None,
            "requestContext": context,
            "body": text,
            "isBase64Encoded": encoded,
        }
    else:
        cookies = [
            c.strip() for n, v in headers if n == "cookie" for c in v.split(";") if c.strip()
        ]
        joined = {k: ",".join(v) for k, v in _multi(headers).items() if k != "cookie"}
        route_key = f"{request.method} {route}"
        context.update(
            {
                "http": {
                    "method": request.method,
                    "path": path,
                    "protocol": f"HTTP/{request.scope.get('http_version', '1.1')}",
                    "sourceIp": source,
                    "userAgent": agent,
                },
                "routeKey": route_key,
                "stage": "$default",
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "timeEpoch": int(now * 1000),
            }
        )
        if principal is not None:
            context["authorizer"] = {"lambda": {"principalId": principal}}
        event = {
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": path,
            "rawQueryString": request.scope.get("query_string", b"").decode("latin-1"),
            "headers": joined,
            "requestContext": context,
            "isBase64Encoded": encoded,
        }
        if cookies:
            event["cookies"] = cookies
        if query:
            event["queryStringParameters"] = {k: ",".join(v) for k, v in _multi(query).items()}
        if text is not None:
            event["body"] = text
    return event
