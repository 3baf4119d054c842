"""A tenant posts large bodies to its own http trigger to stall every other tenant's calls.

An http trigger's function takes a body of up to its `limits.body` (6 MiB here), which the
gateway puts whole into the event it makes (`{method, path, headers, query, body, ...}`,
or API Gateway's proxy event) and encodes as JSON. Before: that was done on the gateway's
event loop, json's encoder (C code holding the GIL) escaping the whole body, 0.12-0.16 s
of the loop's time for 5.9 MB at every call, while every other tenant's calls waited.
Now the event of a body past 64 KiB is encoded in a child process (large_events.py), and
the function gets the same event.

The node runs with asyncio's debug mode, whose probe logs every callback that holds the
loop past its bound (`slow_callback_duration`, 0.1 s): a call whose event is encoded on
the loop leaves such a line from its request's task (tests/loop_support.py).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator

import pytest

from harness import LiveNode, start_node
from loop_support import PROBED, other_tenant_key, slow_request_steps, while_another_calls

pytestmark = pytest.mark.slow

#: What the function saw of the request: its body's digest, and the event's other fields.
SEES = """\
import hashlib, json
def handler(event, context):
    body = event.pop('body')
    event['digest'] = hashlib.sha256(body.encode()).hexdigest()
    event['size'] = len(body)
    headers = {'content-type': 'application/json'}
    return {'statusCode': 200, 'headers': headers, 'body': json.dumps(event)}
"""
#: A body of 5.9 MB of JSON.
BODY = json.dumps({"items": list(range(900_000))}, separators=(",", ":")).encode()
CALLS = 3


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, str, str]]:
    """A node in asyncio's debug mode; tenant A's `sees` (http triggers at /fn/big and, API
    Gateway's v2 format, /fn/big-v2, bodies of up to 6 MiB) and tenant B's warm `tiny`."""
    live = start_node(tmp_path_factory.mktemp("large-http"), PROBED)
    try:
        a = live.create_key("tenant-a", "developer", ["sees"])["key"]
        manifest = (
            "name: sees\nhandler: main.handler\nisolation: warm\nlimits: {body: 6MiB}\n"
            "triggers:\n  - http: {path: /big, methods: [POST], auth: key}\n"
            "  - http: {path: /big-v2, methods: [POST], auth: key, event_format: apigw-v2}\n"
        )
        files = {"donjon.yaml": manifest.encode(), "main.py": SEES.encode()}
        deployed = live.deploy_files(a, files)
        assert deployed.status_code == 201, deployed.text
        b = other_tenant_key(live)
        yield live, a, b
    finally:
        live.stop()


def test_a_large_body_reaches_the_function_as_a_small_one_does(
    tenants: tuple[LiveNode, str, str],
) -> None:
    """The function gets a large body whole (as text, or base64 when it is not UTF-8), in
    either event format, with the same other fields as a small body's event."""
    node, a, _ = tenants
    binary = b"\xff" + BODY[1:]
    with node.client(a) as c:
        seen = {
            (route, name): c.post(f"/fn/{route}?q=1", content=body, timeout=120)
            for route in ("big", "big-v2")
            for name, body in (("small", b'{"a":1}'), ("large", BODY), ("binary", binary))
        }
    assert {k: r.status_code for k, r in seen.items()} == dict.fromkeys(seen, 200)
    for route, field in (("big", "is_base64_encoded"), ("big-v2", "isBase64Encoded")):
        small, large, encoded = (seen[route, n].json() for n in ("small", "large", "binary"))
        assert large["digest"] == hashlib.sha256(BODY.decode().encode()).hexdigest()
        assert large["size"] == len(BODY) and large[field] is False
        assert encoded[field] is True and encoded["size"] == 4 * -(-len(binary) // 3)
        assert sorted(large) == sorted(small) == sorted(encoded)
    assert seen["big", "large"].json()["query"] == {"q": "1"}


def test_large_bodies_do_not_stall_another_tenant(tenants: tuple[LiveNode, str, str]) -> None:
    """While tenant A posts 5.9 MB bodies to its http trigger three times, tenant B's calls
    of its own function keep completing, and no more than one of A's calls has a step of
    its request hold the loop past 0.1 s (before: every call did)."""
    node, a, b = tenants
    start = time.time()
    with node.client(a) as c:
        calls, statuses = while_another_calls(
            node,
            b,
            "tiny",
            lambda: [c.post("/fn/big", content=BODY, timeout=120) for _ in range(CALLS)],
        )
    end = time.time()
    assert [(r.status_code, r.json()["size"]) for r in calls] == [(200, len(BODY))] * CALLS
    assert statuses and set(statuses) == {200}, statuses
    node.stop()  # its log complete
    slow = slow_request_steps(node, start, end)
    assert len(slow) <= 1, slow
