"""Invariant 8 for JSON: a body nested deeper than the gateway parses gets a clear error.

`"[" * 100000 + "]" * 100000` used to reach json.loads, whose recursion ended
in an uncaught RecursionError (500, unaudited). Every place that parses JSON a
client or a function controls now refuses such nesting before parsing it.
"""

from __future__ import annotations

import json

import httpx
import pytest

from harness import LiveNode, fresh_source
from sec_support import Ready, assert_problem, audit_records

DEPTH = 100_000
DEEP = b"[" * DEPTH + b"]" * DEPTH


def _refusals(node: LiveNode, r: httpx.Response) -> list[dict[str, object]]:
    return [
        rec
        for rec in audit_records(node, r.headers["x-request-id"])
        if rec["action"] == "input.refused"
    ]


def test_deeply_nested_event_is_refused_with_400(node: LiveNode) -> None:
    """A 100,000-deep array as an event is a 400 problem, audited, and runs nothing."""
    with node.client(source=fresh_source()) as c:
        r = c.post("/v1/functions/probe/invoke", content=DEEP)
    body = assert_problem(r, 400)
    assert "nested deeper" in body["detail"]
    records = audit_records(node, r.headers["x-request-id"])
    assert [rec["action"] for rec in records] == ["input.refused"], records
    assert records[0]["outcome"] == "denied"


def test_deeply_nested_objects_are_refused_with_400(node: LiveNode) -> None:
    """Objects nest like arrays: `{"a":` 100,000 times is refused too."""
    deep = b'{"a":' * DEPTH + b"1" + b"}" * DEPTH
    with node.client(source=fresh_source()) as c:
        r = c.post("/v1/functions/probe/invoke", content=deep)
    assert_problem(r, 400)
    assert len(_refusals(node, r)) == 1


def test_deep_event_hidden_by_utf16_is_refused(node: LiveNode) -> None:
    """UTF-16 (which json.loads accepts) cannot hide brackets from the depth check.

    U+2200 encodes as the bytes 00 22: a scan of raw bytes would see a quote there.
    """
    text = '["\u2200",' + "[" * DEPTH + "]" * DEPTH + "]"
    with node.client(source=fresh_source()) as c:
        r = c.post("/v1/functions/probe/invoke", content=text.encode("utf-16-le"))
    assert_problem(r, 400)


def test_brackets_inside_strings_do_not_count_as_depth(node: LiveNode, started: Ready) -> None:
    """A shallow event whose string holds 100,000 brackets is an ordinary event."""
    started("probe")
    event = {"op": "echo", "text": "[" * DEPTH + '\\"{' * 10}
    r = node.invoke("probe", event)
    assert r.status_code == 200, r.text


def test_event_at_the_depth_limit_is_accepted(node: LiveNode, started: Ready) -> None:
    """128 levels is within the limit and reaches the function."""
    started("probe")
    nested: object = 1
    for _ in range(127):
        nested = [nested]
    r = node.invoke("probe", {"op": "echo", "nested": nested})  # 128 with the event itself
    assert r.status_code == 200, r.text


def test_deeply_nested_admin_body_is_refused_with_400(node: LiveNode) -> None:
    """Admin bodies (key creation) go through the same depth check."""
    deep = b"[" * 20_000 + b"]" * 20_000  # within the 64 KiB that admin bodies may have
    with node.client(source=fresh_source()) as c:
        r = c.post("/v1/keys", content=b'{"name": "deep", "role": ' + deep + b"}")
    assert_problem(r, 400)
    assert len(_refusals(node, r)) == 1
    with node.client() as c:
        assert "deep" not in [k["name"] for k in c.get("/v1/keys").json()]


@pytest.mark.parametrize("case", ["deep-body", "deep-head"])
def test_function_reply_nested_too_deep_is_a_502(node: LiveNode, case: str, started: Ready) -> None:
    """A function's forged reply (the head of its split http response, or the reply's own
    head) nested too deep is its failure: 502, audited."""
    started("sec-reply")
    with node.client("") as c:
        r = c.get("/fn/sec-reply", params={"case": case})
    assert_problem(r, 502)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "function.invoke"
    assert record["outcome"] not in ("ok", "interrupted"), record


def test_nested_http_response_body_is_sent_unparsed(node: LiveNode, started: Ready) -> None:
    """An http response's body deeper than the gateway parses is sent as the function's own
    bytes: the worker serialised it, the gateway parses none of it (as the invoke route
    parses no result), so its depth is no hazard to the gateway (it used to be a 502)."""
    started("sec-reply")
    with node.client("") as c:
        r = c.get("/fn/sec-reply", params={"case": "nested"})
    assert r.status_code == 200
    assert r.content == b"[" * 301 + b"]" * 301
    assert r.headers["content-type"] == "application/json"


def test_http_trigger_body_is_passed_on_not_parsed(node: LiveNode, started: Ready) -> None:
    """The gateway hands an http trigger's deep body to the function as text; it is not parsed."""
    started("sec-http")
    with node.client("") as c:
        r = c.post("/fn/sec-http/public", content=DEEP)
    # sec-http parses the body itself; its own RecursionError is its own failure.
    assert_problem(r, 500)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["outcome"] == "FunctionFailed"
    assert json.dumps(record).count("[") < 100
