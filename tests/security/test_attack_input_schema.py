"""Events a function's input_schema refuses (issue 15, point 4): 400 for what is not JSON,
422 naming the failing field as a JSON pointer, on every way in, and the function never
runs (no `function.invoke` record, its call count unchanged)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from donjon.bundle import build_bundle
from harness import LiveNode
from sec_support import assert_problem, audit_records

TYPED = "rq-typed"
CALLER = "rq-typed-caller"
LAMBDA_PATH = "/2015-03-31/functions/{}/invocations"
SCHEMA = (
    "input_schema:\n"
    "  type: object\n"
    "  required: [url]\n"
    "  properties:\n"
    "    url: {type: string}\n"
    "    opts: {type: object, properties: {depth: {type: integer}}}\n"
    "    a/b: {type: string}\n"
)
#: Counts its calls (warm: one worker for its life) and says how many it has served.
COUNTER = (
    "CALLS = [0]\ndef handler(event, context):\n    CALLS[0] += 1\n    return {'calls': CALLS[0]}\n"
)
CALLS = (
    "def handler(event, context):\n"
    "    try:\n"
    "        return {'result': context.invoke(event['to'], event.get('event'))}\n"
    "    except context.InvokeError as e:\n"
    "        return {'kind': e.kind, 'reason': e.reason}\n"
)


def _write(root: Path, name: str, code: str, extra: str = "") -> Path:
    d = root / f"{name}-{secrets.token_hex(3)}"
    d.mkdir()
    (d / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n{extra}"
    )
    (d / "main.py").write_text(code)
    return d


@pytest.fixture(scope="module")
def functions(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A typed counter (warm, an http trigger whose body the schema describes), a caller."""
    root = tmp_path_factory.mktemp("input-schema")
    plan = [
        (
            TYPED,
            COUNTER,
            SCHEMA + "isolation: warm\n"
            "triggers:\n  - http: {path: /rq-typed, methods: [POST], auth: key}\n",
        ),
        (CALLER, CALLS, f"permissions: {{invoke: [{TYPED}]}}\n"),
    ]
    for name, code, extra in plan:
        _, archive = build_bundle(_write(root, name, code, extra))
        with node.client() as c:
            r = c.post(
                "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
            )
        assert r.status_code == 201, r.text


def _calls(node: LiveNode) -> int:
    """How many calls the typed function has served (this one included)."""
    r = node.invoke(TYPED, {"url": "https://example.test/"})
    assert r.status_code == 200, r.text
    calls: int = r.json()["calls"]
    return calls


def _ran(node: LiveNode, request_id: str) -> list[str]:
    return [
        rec["target"]
        for rec in audit_records(node, request_id)
        if rec["action"] == "function.invoke"
    ]


@pytest.mark.parametrize(
    ("event", "pointer"),
    [
        ({"nope": 1}, "/url"),
        ({"url": 5}, "/url"),
        ({"url": "x", "opts": {"depth": "deep"}}, "/opts/depth"),
        ({"url": "x", "a/b": 1}, "/a~1b"),
        ([1, 2], "(root)"),
    ],
)
def test_event_the_schema_refuses_is_422_naming_the_field(
    node: LiveNode, functions: None, event: Any, pointer: str
) -> None:
    """invoke: 422 whose detail names the failing field as a JSON pointer; nothing ran."""
    before = _calls(node)
    r = node.invoke(TYPED, event)
    body = assert_problem(r, 422)
    assert f"schema at {pointer}:" in body["detail"], body
    assert _ran(node, body["request_id"]) == []
    assert _calls(node) == before + 1  # only the two counting calls ran


def test_http_trigger_body_the_schema_refuses_is_422(node: LiveNode, functions: None) -> None:
    """An http trigger of a typed function holds its JSON body to the schema: 422, nothing ran."""
    before = _calls(node)
    with node.client() as c:
        r = c.post("/fn/rq-typed", json={"url": ["not", "a", "string"]})
    body = assert_problem(r, 422)
    assert "schema at /url:" in body["detail"], body
    assert _ran(node, body["request_id"]) == []
    assert _calls(node) == before + 1


def test_http_trigger_body_that_is_not_json_is_400(node: LiveNode, functions: None) -> None:
    """A typed function's http trigger refuses a body that is not JSON with 400; nothing ran."""
    before = _calls(node)
    with node.client() as c:
        r = c.post("/fn/rq-typed", content=b"url=https://example.test/")
    body = assert_problem(r, 400)
    assert "not valid JSON" in body["detail"], body
    assert _ran(node, body["request_id"]) == []
    assert _calls(node) == before + 1


def test_http_trigger_body_nested_too_deep_is_400(node: LiveNode, functions: None) -> None:
    """A typed function's http trigger body 100,000 levels deep is refused before parsing."""
    with node.client() as c:
        r = c.post("/fn/rq-typed", content=b"[" * 100_000 + b"]" * 100_000)
    body = assert_problem(r, 400)
    assert "nested deeper" in body["detail"], body
    assert _ran(node, body["request_id"]) == []


def test_http_trigger_body_matching_the_schema_runs(node: LiveNode, functions: None) -> None:
    """A JSON body that matches reaches the function as the http event's body, unchanged."""
    with node.client() as c:
        r = c.post("/fn/rq-typed", json={"url": "https://example.test/"})
    assert r.status_code == 200, r.text


def test_lambda_event_the_schema_refuses_is_422(node: LiveNode, functions: None) -> None:
    """The Lambda Invoke API holds the event to the schema: 422 with the pointer, nothing ran."""
    with node.client() as c:
        key = c.post("/v1/keys", json={"name": "rq-typed-lambda", "role": "admin"}).json()
    payload = json.dumps({"url": "x", "opts": {"depth": 1.5}}).encode()
    request = AWSRequest(method="POST", url=node.url + LAMBDA_PATH.format(TYPED), data=payload)
    creds = Credentials(key["id"], key["sigv4_secret"])
    botocore.auth.SigV4Auth(creds, "lambda", "us-east-1").add_auth(request)
    with node.client("") as c:
        r = c.post(LAMBDA_PATH.format(TYPED), content=payload, headers=dict(request.headers))
    body = assert_problem(r, 422)
    assert r.headers["x-amzn-errortype"] == "InvalidRequestContentException"
    assert "schema at /opts/depth:" in body["message"], body
    assert _ran(node, body["request_id"]) == []


def test_context_invoke_event_the_schema_refuses_is_invalid(
    node: LiveNode, functions: None
) -> None:
    """context.invoke with an event the callee's schema refuses: kind invalid naming the
    pointer; the callee never runs."""
    before = _calls(node)
    r = node.invoke(CALLER, {"to": TYPED, "event": {"url": "x", "opts": []}})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out.get("kind") == "invalid" and "schema at /opts:" in out["reason"], out
    assert _calls(node) == before + 1
