"""http triggers with event_format apigw-v1 / apigw-v2: API Gateway's proxy event in, its
proxy response out, through the same response policy (tests/functions/apigw)."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from harness import LiveNode


def _event(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    event: dict[str, Any] = r.json()["event"]
    return event


def _reply(node: LiveNode, path: str, reply: Any) -> httpx.Response:
    with node.client() as c:
        return c.post(path, content=json.dumps({"reply": reply}))


def test_v1_event_carries_multi_values_and_the_caller(node: LiveNode) -> None:
    """Payload 1.0: repeated query keys and headers in the multiValue maps, the caller as
    the authorizer's principalId, the trigger's path as resource and path."""
    with node.client() as c:
        event = _event(c.get("/fn/apigw/v1?a=1&a=2&b=3", headers={"x-tag": "t"}))
    assert event["version"] == "1.0"
    assert event["httpMethod"] == "GET"
    assert event["path"] == event["resource"] == "/apigw/v1"
    assert event["queryStringParameters"] == {"a": "2", "b": "3"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["3"]}
    assert event["headers"]["x-tag"] == "t"
    assert event["multiValueHeaders"]["x-tag"] == ["t"]
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["authorizer"]["principalId"].startswith("key:")
    assert context["httpMethod"] == "GET"
    assert context["requestId"]
    assert context["identity"]["sourceIp"] == "127.0.0.1"


def test_v2_event_has_cookies_raw_query_and_joined_values(node: LiveNode) -> None:
    """Payload 2.0: cookies as a list, the raw query string, repeated values comma-joined,
    a binary body base64-encoded."""
    with node.client() as c:
        r = c.post(
            "/fn/apigw/v2?a=1&a=2",
            content=b"\xff\x00binary",
            headers={"cookie": "x=1; y=2"},
        )
    event = _event(r)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /apigw/v2"
    assert event["rawPath"] == "/apigw/v2"
    assert event["rawQueryString"] == "a=1&a=2"
    assert event["queryStringParameters"] == {"a": "1,2"}
    assert event["cookies"] == ["x=1", "y=2"]
    assert "cookie" not in event["headers"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\x00binary"
    http = event["requestContext"]["http"]
    assert http["method"] == "POST"
    assert http["path"] == "/apigw/v2"
    assert event["requestContext"]["authorizer"]["lambda"]["principalId"].startswith("key:")


def test_platform_key_is_not_in_the_proxy_event(node: LiveNode) -> None:
    """The key that authenticated the call reaches neither headers nor multiValueHeaders."""
    with node.client() as c:
        text = c.get("/fn/apigw/v1").text
    assert node.admin_key not in text
    assert "authorization" not in _event(httpx.Response(200, content=text))["headers"]


def test_v1_response_maps_multi_value_headers_and_base64_body(node: LiveNode) -> None:
    """statusCode, headers, multiValueHeaders (which win over headers) and a base64 body."""
    r = _reply(
        node,
        "/fn/apigw/v1",
        {
            "statusCode": 201,
            "headers": {"x-one": "1", "x-both": "from-headers"},
            "multiValueHeaders": {"x-many": ["a", "b"], "x-both": ["from-multi"]},
            "body": base64.b64encode(b"\x00\x01bytes").decode(),
            "isBase64Encoded": True,
        },
    )
    assert r.status_code == 201
    assert r.content == b"\x00\x01bytes"
    assert r.headers["x-one"] == "1"
    assert r.headers.get_list("x-many") == ["a", "b"]
    assert r.headers.get_list("x-both") == ["from-multi"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in r.headers["content-security-policy"]


def test_v2_response_cookies_become_set_cookie_on_the_route(node: LiveNode) -> None:
    """`cookies` become Set-Cookie headers, kept on the function's own route."""
    r = _reply(node, "/fn/apigw/v2", {"statusCode": 200, "cookies": ["a=1", "b=2"], "body": "ok"})
    assert r.status_code == 200
    assert r.text == "ok"
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/fn/apigw/v2", "b=2; Path=/fn/apigw/v2"]


def test_v2_result_without_status_is_json(node: LiveNode) -> None:
    """As HTTP APIs do: a result with no statusCode is a 200 with it as JSON."""
    r = _reply(node, "/fn/apigw/v2", {"just": ["data"]})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"just": ["data"]}


def test_v1_result_without_status_is_a_bad_gateway(node: LiveNode) -> None:
    """As REST APIs do: a result that is not a proxy response is a 502, with a reason."""
    r = _reply(node, "/fn/apigw/v1", {"just": "data"})
    assert r.status_code == 502
    assert "no statusCode" in r.json()["detail"]


def test_malformed_proxy_responses_are_bad_gateway(node: LiveNode) -> None:
    """A non-string body, bad base64, non-list multi values or a bad status: 502 each."""
    bad = [
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
        {"statusCode": 200, "multiValueHeaders": {"x": "not-a-list"}},
        {"statusCode": "200"},
        {"statusCode": 200, "headers": {"x": {"nested": 1}}},
    ]
    for reply in bad:
        r = _reply(node, "/fn/apigw/v1", reply)
        assert r.status_code == 502, (reply, r.text)
        assert r.headers["content-type"] == "application/problem+json"


def test_logging_goes_to_the_call_output_with_the_request_id(node: LiveNode) -> None:
    """The root logger writes Lambda's line format with the request id, at the manifest's
    level (DEBUG here), in order with print()."""
    with node.client() as c:
        r = c.get("/fn/apigw/v2")
        request_id = r.headers["x-request-id"]
        logs = c.get("/v1/functions/apigw/logs").json()
    output = next(e["output"] for e in logs if e["request_id"] == request_id)
    lines = output.splitlines()
    assert lines[0].startswith("[DEBUG]\t")
    assert lines[0].endswith(f"\t{request_id}\tdebug line")
    assert lines[1].startswith("[INFO]\t")
    assert lines[1].endswith(f"\t{request_id}\tevent version 2.0")
    assert lines[2] == "printed line"
