"""What `donjon new` writes: a manifest, a handler and a test that passes, per template.

`{name}` in a file stands for the function's name (a checked manifest name,
so it needs no escaping in YAML or Python). Every template deploys through
the scan gate as written, and its test runs with `python -m pytest` in the
function's directory, without a node.
"""

from __future__ import annotations

__all__ = ["TEMPLATES"]

_HTTP_MANIFEST = """\
name: {name}
handler: main.handler
memory_mb: 128
timeout_s: 10
# Answers at https://<node>/fn/{name}; callers send an API key (auth: key).
triggers:
  - http: {{path: /{name}, methods: [GET, POST], auth: key}}
limits: {{rate: "100/minute", concurrency: 4}}
"""

_HTTP_HANDLER = '''\
"""{name}: answers HTTPS requests at /fn/{name}."""

import json


def handler(event, context):
    """event: method, path, headers, query, body, principal. Returns the HTTP response."""
    who = event.get("query", {{}}).get("name", "world")
    return {{
        "statusCode": 200,
        "headers": {{"content-type": "application/json"}},
        "body": json.dumps({{"message": f"hello, {{who}}", "request_id": context.request_id}}),
    }}
'''

_HTTP_TEST = '''\
"""Run with `python -m pytest` in this directory: no node needed."""

import json
from types import SimpleNamespace

from main import handler


def test_greets_the_name_in_the_query():
    """GET /fn/{name}?name=ada answers 200 with a JSON greeting."""
    event = {{
        "method": "GET",
        "path": "/{name}",
        "headers": {{}},
        "query": {{"name": "ada"}},
        "body": "",
        "principal": "key:test",
    }}
    reply = handler(event, SimpleNamespace(request_id="test-request"))
    assert reply["statusCode"] == 200
    assert json.loads(reply["body"]) == {{"message": "hello, ada", "request_id": "test-request"}}
'''

_EVENT_MANIFEST = """\
name: {name}
handler: main.handler
memory_mb: 128
timeout_s: 10
# No trigger: called with `donjon invoke {name} --data '{{"name": "ada"}}'` or the invoke API.
input_schema:
  type: object
  properties:
    name: {{type: string, maxLength: 100}}
  additionalProperties: false
"""

_EVENT_HANDLER = '''\
"""{name}: takes a JSON event, returns a JSON result."""


def handler(event, context):
    """event: the invoke request's JSON body (checked against input_schema)."""
    name = event.get("name", "world")
    return {{"message": f"hello, {{name}}", "request_id": context.request_id}}
'''

_EVENT_TEST = '''\
"""Run with `python -m pytest` in this directory: no node needed."""

from types import SimpleNamespace

from main import handler


def test_greets_the_name_in_the_event():
    """The event's name is greeted; the request id comes from the context."""
    reply = handler({{"name": "ada"}}, SimpleNamespace(request_id="test-request"))
    assert reply == {{"message": "hello, ada", "request_id": "test-request"}}
'''

_LAMBDA_MANIFEST = """\
name: {name}
# A handler written for AWS Lambda's Python runtime, unchanged.
handler: app.lambda_handler
memory_mb: 128
timeout_s: 10
"""

_LAMBDA_HANDLER = '''\
"""{name}: an AWS Lambda handler (Python runtime contract), run by Donjon as it is."""

import json


def lambda_handler(event, context):
    """Returns the shape API Gateway's proxy integration expects."""
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    return {{
        "statusCode": 200,
        "headers": {{"content-type": "application/json"}},
        "body": json.dumps({{"message": f"hello, {{name}}"}}),
    }}
'''

_LAMBDA_TEST = '''\
"""Run with `python -m pytest` in this directory: no node needed."""

import json
from types import SimpleNamespace

from app import lambda_handler


def test_answers_like_an_api_gateway_proxy_integration():
    """statusCode 200 and a JSON body that greets the event's name."""
    context = SimpleNamespace(aws_request_id="test-request", function_name="{name}")
    reply = lambda_handler({{"name": "ada"}}, context)
    assert reply["statusCode"] == 200
    assert json.loads(reply["body"]) == {{"message": "hello, ada"}}
'''

#: template -> {file name: text with {name}}.
TEMPLATES: dict[str, dict[str, str]] = {
    "http": {
        "donjon.yaml": _HTTP_MANIFEST,
        "main.py": _HTTP_HANDLER,
        "test_main.py": _HTTP_TEST,
    },
    "event": {
        "donjon.yaml": _EVENT_MANIFEST,
        "main.py": _EVENT_HANDLER,
        "test_main.py": _EVENT_TEST,
    },
    "lambda": {
        "donjon.yaml": _LAMBDA_MANIFEST,
        "app.py": _LAMBDA_HANDLER,
        "test_app.py": _LAMBDA_TEST,
    },
}
