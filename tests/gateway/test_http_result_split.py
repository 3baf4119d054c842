"""An http trigger's proxy response is split in the function's own worker: the gateway's
loop parses its status and headers, never its body (sandbox/runtime/httpresult.py).

Before: the gateway parsed the whole result on its one event loop, and serialised a body
that was not a string again: a 6 MiB `{"statusCode": 200, "body": [0, 0, ...]}` cost a
fraction of a second of every tenant's time per call (a cross-tenant denial of service).
The replies here are the ones the runtime's own code writes (`_result_body`), or forged,
as function code writing its own frames could forge them.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from donjon.gateway.errors import BadFunctionResponse
from donjon.gateway.response_policy import (
    MAX_FIELD_BYTES,
    MAX_PROXY_HEAD,
    RenderedResponse,
    http_response,
)
from donjon.sandbox.runtime.call import _result_body
from donjon.sandbox.runtime.httpresult import MARK

_ROUTE = "/fn/x"


def _render(result: Any, fmt: str) -> RenderedResponse:
    """`result` as the worker of an http trigger in format `fmt` replies, then rendered."""
    return http_response(_result_body(result, {"response": fmt}), "0123456789abcdef", _ROUTE)


@pytest.mark.parametrize(
    ("fmt", "result", "content"),
    [
        ("http", {"statusCode": 200, "body": [0] * 3_000_000}, json.dumps([0] * 3_000_000)),
        ("apigw-v2", {"statusCode": 200, "body": '{"a":[1,2],' * 500_000}, None),
        ("apigw-v1", {"statusCode": 201, "body": "é" * 2_000_000}, None),
    ],
)
def test_large_proxy_body_is_not_parsed_by_the_gateway(
    parsed_json: list[int], fmt: str, result: dict[str, Any], content: str | None
) -> None:
    """A 6 MiB proxy response: the gateway parses its head only, and sends its body whole."""
    rendered = _render(result, fmt)
    assert sum(parsed_json) <= MAX_PROXY_HEAD, f"the gateway parsed {sum(parsed_json)} bytes"
    assert rendered.response.status_code == result["statusCode"]
    assert rendered.response.body == (content or result["body"]).encode()


def test_plain_result_is_sent_unparsed(parsed_json: list[int]) -> None:
    """A result that is no proxy response is a 200 with it as JSON, as the invoke route's."""
    rendered = _render({"items": [0] * 100_000}, "http")
    assert parsed_json == []
    assert json.loads(bytes(rendered.response.body)) == {"items": [0] * 100_000}
    assert rendered.response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("fmt", "result", "why"),
    [
        ("apigw-v1", {"just": "data"}, "no statusCode"),
        ("apigw-v1", {"statusCode": 200, "body": {"not": "a string"}}, "not a string"),
        ("apigw-v1", {"statusCode": 200, "body": "%%%", "isBase64Encoded": True}, "base64"),
        ("apigw-v1", {"statusCode": 200, "multiValueHeaders": {"x": "y"}}, "not a list"),
        ("apigw-v2", {"statusCode": 200, "headers": {"x": {"nested": 1}}}, "not a string"),
        ("http", {"statusCode": "200"}, "malformed"),
        ("http", {"statusCode": True}, "malformed"),
        ("http", {"statusCode": 99}, "malformed"),
        ("http", {"statusCode": 200, "headers": ["x"]}, "malformed"),
        ("http", {"statusCode": 200, "body": "\ud800"}, "not valid Unicode"),
        ("http", {"statusCode": 204, "body": "x"}, "carries no body"),
        ("http", {"statusCode": 200, "headers": {"x": "a\r\nSet-Cookie: a=1"}}, "cannot send"),
        ("http", {"statusCode": 200, "headers": {"bad name": "1"}}, "not a token"),
        ("http", {"statusCode": 200, "headers": {f"x{i}": "1" for i in range(101)}}, "101"),
        ("http", {"statusCode": 200, "headers": {"x": "a" * MAX_FIELD_BYTES}}, "more than"),
        ("http", {"statusCode": 200, "headers": {"x": "é" * MAX_FIELD_BYTES}}, "more than"),
    ],
)
def test_split_reply_keeps_every_check(fmt: str, result: dict[str, Any], why: str) -> None:
    """What the policy refused of a proxy response it still refuses: 502, with the reason."""
    with pytest.raises(BadFunctionResponse, match=why):
        _render(result, fmt)


def test_split_reply_keeps_the_header_policy() -> None:
    """Origin-wide headers are refused, cookies kept on the route, the platform's headers set."""
    rendered = _render(
        {
            "statusCode": 200,
            "multiValueHeaders": {
                "Strict-Transport-Security": ["max-age=1"],
                "Set-Cookie": ["ok=1", "evil=1; Path=/v1", "d=1; Domain=example.com"],
            },
            "body": base64.b64encode(b"\x00\xff").decode(),
            "isBase64Encoded": True,
        },
        "apigw-v1",
    )
    headers = rendered.response.headers
    assert rendered.refused == ["strict-transport-security", "set-cookie", "set-cookie"]
    assert headers.getlist("set-cookie") == ["ok=1; Path=/fn/x"]
    assert headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in headers["content-security-policy"]
    assert rendered.response.body == b"\x00\xff"


def _forged(head: bytes, content: bytes = b"", size: int | None = None) -> bytes:
    length = len(head) if size is None else size
    return MARK + length.to_bytes(4, "big") + head + content


@pytest.mark.parametrize(
    "body",
    [
        _forged(b"{}", size=MAX_PROXY_HEAD + 1),
        _forged(b'{"status": 200, "headers": []}', size=1 << 31),
        MARK + b"\x00",
        _forged(b"{not json"),
        _forged(b"[1]"),
        _forged(b"[" * 100_000),
        _forged(b'{"status": 200}'),
        _forged(b'{"status": 200, "headers": [["a", "b", "c"]]}'),
        _forged(b'{"status": 200, "headers": [["a", 1]]}'),
        _forged(b'{"status": 200.0, "headers": []}'),
        _forged(b'{"status": 200, "headers": [["connection", "x\\r\\ny: z"]]}'),
        _forged(b'{"error": "' + b"x" * 10_000 + b'"}'),
    ],
)
def test_forged_split_reply_is_refused(body: bytes) -> None:
    """A split reply function code wrote itself, malformed, is the function's 502."""
    with pytest.raises(BadFunctionResponse) as raised:
        http_response(body, "0123456789abcdef", _ROUTE)
    assert len(raised.value.message) <= 500
