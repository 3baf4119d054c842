"""Attacks through API Gateway-format triggers (event_format apigw-v1/v2): a function's
proxy response gets the same response policy as Donjon's own, and the proxy event
carries no platform credential (tests/functions/apigw)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from harness import LiveNode
from sec_support import Ready


@pytest.fixture(autouse=True)
def _function_started(started: Ready) -> None:
    """Each attack here meets apigw from a cold start and from a warm one (invariant 4)."""
    started("apigw")


def _reply(node: LiveNode, path: str, reply: dict[str, Any]) -> httpx.Response:
    with node.client() as c:
        return c.post(path, content=json.dumps({"reply": reply}))


def test_multi_value_headers_cannot_set_origin_wide_headers(node: LiveNode) -> None:
    """HSTS, Clear-Site-Data and CORS credentials in multiValueHeaders are dropped."""
    r = _reply(
        node,
        "/fn/apigw/v1",
        {
            "statusCode": 200,
            "multiValueHeaders": {
                "Strict-Transport-Security": ["max-age=63072000; includeSubDomains"],
                "Clear-Site-Data": ['"*"'],
                "Access-Control-Allow-Credentials": ["true"],
            },
            "body": "x",
        },
    )
    assert r.status_code == 200
    for name in ("strict-transport-security", "clear-site-data"):
        assert name not in r.headers
    assert "access-control-allow-credentials" not in r.headers


def test_v2_cookies_cannot_widen_to_the_host(node: LiveNode) -> None:
    """A cookie with Domain, a __Host- cookie or one with Path=/ is refused."""
    r = _reply(
        node,
        "/fn/apigw/v2",
        {
            "statusCode": 200,
            "cookies": ["a=1; Domain=127.0.0.1", "__Host-b=2; Path=/; Secure", "c=3; Path=/"],
            "body": "x",
        },
    )
    assert r.status_code == 200
    assert r.headers.get_list("set-cookie") == []


def test_v1_set_cookie_in_multi_values_cannot_leave_the_route(node: LiveNode) -> None:
    """Set-Cookie through multiValueHeaders stays on the route, or is refused."""
    r = _reply(
        node,
        "/fn/apigw/v1",
        {
            "statusCode": 200,
            "multiValueHeaders": {"Set-Cookie": ["ok=1", "evil=1; Path=/v1"]},
            "body": "x",
        },
    )
    assert r.headers.get_list("set-cookie") == ["ok=1; Path=/fn/apigw/v1"]


def test_multi_value_header_cannot_inject_a_line(node: LiveNode) -> None:
    """A CR/LF in a multiValueHeaders value is a 502, not a second header."""
    r = _reply(
        node,
        "/fn/apigw/v1",
        {"statusCode": 200, "multiValueHeaders": {"x-a": ["1\r\nSet-Cookie: evil=1"]}},
    )
    assert r.status_code == 502
    assert "set-cookie" not in r.headers


def test_proxy_response_cannot_forge_framing(node: LiveNode) -> None:
    """content-length and transfer-encoding from the function are dropped; the body is whole."""
    r = _reply(
        node,
        "/fn/apigw/v2",
        {
            "statusCode": 200,
            "headers": {"content-length": "1", "transfer-encoding": "chunked"},
            "body": "the whole body",
        },
    )
    assert r.status_code == 200
    assert r.text == "the whole body"
    assert "transfer-encoding" not in r.headers


def test_donjon_key_sent_to_a_public_proxy_trigger_is_removed(node: LiveNode) -> None:
    """A Donjon key sent to an auth: public apigw trigger reaches no part of the event."""
    with node.client() as c:
        r = c.get("/fn/apigw/public", headers={"cookie": "k=v"})
    assert r.status_code == 200
    assert node.admin_key not in r.text
    event = r.json()["event"]
    assert "authorization" not in event["headers"]
    assert "authorizer" not in event["requestContext"]


def test_proxy_response_status_outside_http_is_refused(node: LiveNode) -> None:
    """A statusCode the server cannot send (101, 600, a bool) is a 502."""
    for status in (101, 600, True):
        r = _reply(node, "/fn/apigw/v2", {"statusCode": status, "body": ""})
        assert r.status_code == 502, status
