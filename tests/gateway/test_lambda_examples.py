"""The Lambda examples run unchanged: a plain handler, aws-lambda-powertools, and FastAPI
through Mangum, the last two installed into their bundles from requirements.txt by
`donjon deploy` (for the sandbox's interpreter: pydantic-core is a compiled wheel)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from harness import EXAMPLES, LiveNode

LAMBDA = EXAMPLES / "lambda"


@pytest.fixture(scope="module")
def examples(node: LiveNode) -> LiveNode:
    """The three examples deployed with the real CLI (which asks the node's target)."""
    for name in ("plain", "powertools", "fastapi"):
        # pip installs from the index and the scan reads every vendored module: on a
        # loaded machine that can take longer than run_cli's two minutes.
        done = subprocess.run(
            [sys.executable, "-m", "donjon.cli", "deploy", str(LAMBDA / name)],
            env=node.env(),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "deployed lambda-" in done.stdout, done.stdout + done.stderr
    return node


def _logs(node: LiveNode, name: str, request_id: str) -> str:
    with node.client() as c:
        entries: list[dict[str, Any]] = c.get(f"/v1/functions/{name}/logs").json()
    return str(next(e["output"] for e in entries if e["request_id"] == request_id))


def test_plain_handler_sees_lambda_context(examples: LiveNode) -> None:
    """context offers Lambda's attributes; the environment has Lambda's variables."""
    r = examples.invoke("lambda-plain", {"x": 1})
    assert r.status_code == 200, r.text
    facts = r.json()
    request_id = r.headers["x-request-id"]
    assert facts["aws_request_id"] == request_id
    assert facts["function_name"] == "lambda-plain"
    assert facts["function_version"].isdigit()
    assert facts["memory_limit_in_mb"] == 64
    assert facts["invoked_function_arn"] == (
        "arn:donjon:lambda:local:000000000000:function:lambda-plain"
    )
    assert facts["log_group_name"] == "/donjon/functions/lambda-plain"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\d+\][0-9a-f]{32}", facts["log_stream_name"]), facts[
        "log_stream_name"
    ]
    assert 0 < facts["remaining_ms"] <= 5000
    assert facts["env_function_name"] == "lambda-plain"
    assert facts["env_log_level"] == "INFO"


def test_plain_handler_logs_at_its_manifest_level(examples: LiveNode) -> None:
    """logger.info reaches the call's output with the request id; debug does not (INFO)."""
    r = examples.invoke("lambda-plain", {})
    request_id = r.headers["x-request-id"]
    output = _logs(examples, "lambda-plain", request_id)
    assert re.fullmatch(
        rf"\[INFO\]\t\S+Z\t{request_id}\trequest {request_id} for lambda-plain\n", output
    ), output


def test_plain_handler_behind_rest_api_event(examples: LiveNode) -> None:
    """Through an apigw-v1 trigger: query in, multiValueHeaders out."""
    with examples.client() as c:
        r = c.get("/fn/lambda/plain?name=ada")
    assert r.status_code == 200, r.text
    assert r.headers.get_list("x-greeting") == ["hello", "ada"]
    assert r.json()["greeting"] == "hello ada"
    assert r.json()["path"] == "/lambda/plain"


def test_powertools_resolver_and_logger(examples: LiveNode) -> None:
    """aws-lambda-powertools' REST resolver routes GET and POST; its Logger writes JSON
    lines with Lambda's context fields to the call's output."""
    with examples.client() as c:
        r = c.get("/fn/lambda/todos?owner=ada")
        assert r.status_code == 200, r.text
        assert r.json() == {"owner": "ada", "todos": [{"id": 1, "title": "deploy to Donjon"}]}
        posted = c.post("/fn/lambda/todos", json={"title": "write tests"})
    assert posted.status_code == 201, posted.text
    assert posted.json() == {"id": 2, "title": "write tests"}
    request_id = r.headers["x-request-id"]
    line = json.loads(_logs(examples, "lambda-powertools", request_id).splitlines()[0])
    assert line["message"] == "listing todos"
    assert line["owner"] == "ada"
    assert line["function_request_id"] == request_id
    assert line["function_name"] == "lambda-powertools"
    assert line["function_memory_size"] == 256
    assert line["function_arn"].endswith(":function:lambda-powertools")


def test_fastapi_through_mangum(examples: LiveNode) -> None:
    """FastAPI (pydantic-core, a compiled wheel, imported in the sandbox) through Mangum
    on an apigw-v2 trigger: routing, validation, status codes and a cookie."""
    with examples.client() as c:
        hello = c.get("/fn/lambda/hello?name=ada")
        created = c.post("/fn/lambda/items", json={"name": "tea", "price": 2.5})
        invalid = c.post("/fn/lambda/items", json={"name": "", "price": -1})
    assert hello.status_code == 200, hello.text
    assert hello.json() == {"message": "hello ada"}
    assert created.status_code == 201, created.text
    assert created.json() == {"item": {"name": "tea", "price": 2.5}, "total": 3.0}
    cookie = created.headers["set-cookie"]
    assert cookie.startswith("last-item=tea;")
    assert "Path=/fn/lambda/items" in cookie
    assert invalid.status_code == 422
    assert {e["loc"][-1] for e in invalid.json()["detail"]} == {"name", "price"}
