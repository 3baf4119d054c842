"""A client's own X-Forwarded-For/-Proto must not pass for the gateway's word in an http
trigger's event.

Donjon's event names no client address, and API Gateway's proxy events carry the
X-Forwarded-For that API Gateway appends the caller to: a function (or the Lambda
adapter it runs: ProxyFix, uvicorn's proxy headers) takes the last address as the
caller's and X-Forwarded-Proto as the scheme. A caller that sends its own would choose
the address the function rate-limits or allow-lists by.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from harness import LiveNode, fresh_source

SPOOFED = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "http"}


def _seen(node: LiveNode, path: str, source: str, key: str) -> dict[str, Any]:
    transport = httpx.HTTPTransport(verify=node.tls, local_address=source)
    headers = {"authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=node.url, transport=transport, headers=headers, timeout=60) as c:
        r = c.get(path, headers=SPOOFED)
    assert r.status_code == 200, r.text
    seen: dict[str, Any] = r.json()["event"]["headers"]  # Donjon's event, or API Gateway's
    return seen


@pytest.mark.parametrize("path", ["/fn/sec-http/public", "/fn/sec-http/key", "/fn/apigw/v1"])
def test_function_sees_the_real_caller_last_in_x_forwarded_for(node: LiveNode, path: str) -> None:
    """The caller's own X-Forwarded-For is kept, but the address the gateway saw is last,
    and X-Forwarded-Proto is the scheme it was served on."""
    source = fresh_source()
    key = "" if path.endswith("public") else node.admin_key
    headers = {k.lower(): v for k, v in _seen(node, path, source, key).items()}
    hops = [h.strip() for h in headers["x-forwarded-for"].split(",")]
    assert hops == ["203.0.113.7", source], headers
    assert headers["x-forwarded-proto"] == "https", headers


def test_apigw_v2_event_names_the_real_caller(node: LiveNode) -> None:
    """API Gateway's 2.0 event: its X-Forwarded-For ends with the caller, as its sourceIp."""
    source = fresh_source()
    transport = httpx.HTTPTransport(verify=node.tls, local_address=source)
    with httpx.Client(base_url=node.url, transport=transport, timeout=60) as c:
        r = c.get("/fn/apigw/public", headers=SPOOFED)
    assert r.status_code == 200, r.text
    event = json.loads(r.text)["event"]
    assert event["requestContext"]["http"]["sourceIp"] == source
    assert event["headers"]["x-forwarded-for"].split(",")[-1].strip() == source
    assert event["headers"]["x-forwarded-proto"] == "https"
