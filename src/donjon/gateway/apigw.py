"""API Gateway's Lambda proxy integration, for http triggers with `event_format: apigw-v1|v2`.

In: the request as API Gateway's proxy event, payload format 1.0 (REST APIs) or 2.0
(HTTP APIs), so ASGI/WSGI adapters (Mangum) and aws-lambda-powertools' event
handlers take it unchanged. Out: the function's proxy response (`statusCode`,
`headers`, `multiValueHeaders`, `cookies`, `body`, `isBase64Encoded`) mapped back to
HTTP through the same response policy as every http trigger (`render_http`).

The path a function sees is its trigger's path, without the gateway's `/fn` prefix
(as behind an API Gateway custom domain). The caller is `requestContext.authorizer`'s
`principalId` (format 1.0) or `lambda.principalId` (2.0), as a Lambda authorizer would
set it; public triggers have no authorizer. Credentials are removed as from Donjon's
own event (the caller gives them as `headers`).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from typing import Any, Literal

from starlette.requests import Request

from donjon import boundedjson
from donjon.gateway.errors import BadFunctionResponse
from donjon.gateway.response_policy import RenderedResponse, function_json_response, render_http

__all__ = ["EventFormat", "apigw_event", "apigw_response"]

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
) -> bytes:
    """The proxy event of `request`; `path` as routed ("/x"), `route` the trigger's path,
    `headers` those the function may see (credentials already removed)."""
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
    return json.dumps(event).encode()


def apigw_response(
    version: EventFormat,
) -> Callable[[bytes, str, str], RenderedResponse]:
    """The renderer of a function's proxy response in `version`'s payload format."""

    def render(body: bytes, request_id: str, route: str) -> RenderedResponse:
        try:
            result: Any = boundedjson.loads(body)
        except (ValueError, boundedjson.JSONTooDeep) as e:
            raise BadFunctionResponse("the function returned a malformed response") from e
        if not (isinstance(result, dict) and "statusCode" in result):
            if version == "apigw-v2":
                # As HTTP APIs do: a result with no statusCode is a 200 with it as JSON.
                return function_json_response(body, request_id)
            raise BadFunctionResponse(
                "the function's result is not an API Gateway proxy response (no statusCode)"
            )
        return render_http(
            result["statusCode"],
            _headers(result, version),
            _content(result),
            request_id,
            route,
        )

    return render


def _headers(result: dict[str, Any], version: EventFormat) -> list[tuple[str, str]]:
    """`headers`, `multiValueHeaders` (1.0: its values win for a name in both) and
    `cookies` (2.0: one Set-Cookie each) as (name, value) pairs."""
    single = result.get("headers") or {}
    multi = (result.get("multiValueHeaders") or {}) if version == "apigw-v1" else {}
    cookies = (result.get("cookies") or []) if version == "apigw-v2" else []
    if not (isinstance(single, dict) and isinstance(multi, dict) and isinstance(cookies, list)):
        raise BadFunctionResponse(
            "the function's proxy response has headers, multiValueHeaders or cookies "
            "of the wrong type"
        )
    pairs: list[tuple[str, str]] = []
    in_multi = {str(k).lower() for k in multi}
    for name, value in single.items():
        if str(name).lower() not in in_multi:
            pairs.append((str(name), _scalar(value)))
    for name, values in multi.items():
        if not isinstance(values, list):
            raise BadFunctionResponse(
                f"multiValueHeaders[{str(name)[:64]!r}] is not a list of values"
            )
        pairs += [(str(name), _scalar(v)) for v in values]
    pairs += [("set-cookie", _scalar(c)) for c in cookies]
    return pairs


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise BadFunctionResponse("a header value of the function's proxy response is not a string")


def _content(result: dict[str, Any]) -> bytes:
    payload = result.get("body")
    if payload is None:
        return b""
    if not isinstance(payload, str):
        raise BadFunctionResponse("the body of the function's proxy response is not a string")
    if result.get("isBase64Encoded") is True:
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as e:
            raise BadFunctionResponse(
                "the function's body says isBase64Encoded but is not base64"
            ) from e
    try:
        return payload.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate, from a \ud800 escape
        raise BadFunctionResponse("the function's body is not valid Unicode") from e
