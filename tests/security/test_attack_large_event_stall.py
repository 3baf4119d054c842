"""A tenant calls its own function with large events to stall every other tenant's calls.

A function may take events of up to 6 MiB (`limits.body`). Before: the gateway parsed
each call's event (boundedjson's depth scan and json's parser, C code holding the GIL)
and checked it against the function's input_schema on its event loop, about 0.4 s of the
loop's time for 5 MB, at every call: every other tenant's calls waited. Now an event past
64 KiB is parsed and checked in a child process (gateway/large_events.py), and the
answers and refusals are the same as on the loop.

The node runs with asyncio's debug mode, whose probe logs every callback that holds the
loop past its bound (`slow_callback_duration`, 0.1 s): a call whose event is parsed on
the loop leaves such a line from its request's task (tests/loop_support.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from harness import LiveNode, start_node
from loop_support import PROBED, slow_request_steps, while_another_calls
from sec_support import audit_records

pytestmark = pytest.mark.slow

COUNTS = "def handler(event, context):\n    return len(event['items'])\n"
SCHEMA = (
    "input_schema: {type: object, required: [items],"
    " properties: {items: {type: array, items: {type: integer}}}}\n"
)
TINY = "def handler(event, context):\n    return {'ok': True}\n"
#: Items of a large event: 900,000 of them are 5.9 MB of JSON.
ITEMS = 900_000
CALLS = 3


def _large(items: list[object]) -> bytes:
    return json.dumps({"items": items}, separators=(",", ":")).encode()


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, str, str]]:
    """A node in asyncio's debug mode; tenant A's `counts` (an input_schema, events of up to
    6 MiB) and tenant B's warm `tiny`, each deployed with its own developer key."""
    live = start_node(tmp_path_factory.mktemp("large-events"), PROBED)
    try:
        a = live.create_key("tenant-a", "developer", ["counts"])["key"]
        manifest = "name: counts\nhandler: main.handler\nisolation: warm\nlimits: {body: 6MiB}\n"
        files = {"donjon.yaml": (manifest + SCHEMA).encode(), "main.py": COUNTS.encode()}
        assert live.deploy_files(a, files).status_code == 201
        b = live.create_key("tenant-b", "developer", ["tiny"])["key"]
        tiny = b"name: tiny\nhandler: main.handler\nisolation: warm\n"
        assert (
            live.deploy_files(b, {"donjon.yaml": tiny, "main.py": TINY.encode()}).status_code == 201
        )
        yield live, a, b
    finally:
        live.stop()


def test_a_large_event_is_refused_as_a_small_one_is(tenants: tuple[LiveNode, str, str]) -> None:
    """A large event the schema refuses is a 422 naming the first failing field, one that is
    not JSON a 400 with json's own words, one nested too deep a 400, audited; a large event
    the schema takes runs."""
    node, a, _ = tenants
    wrong = _large([*range(ITEMS), "x"])
    not_json = _large(list(range(ITEMS)))[:-2] + b",oops]}"
    with pytest.raises(json.JSONDecodeError, match="Expecting value") as said:
        json.loads(not_json)
    deep = b"[" * 200 + b" " * 70_000 + b"]" * 200
    with node.client(a) as c:
        refused = c.post("/v1/functions/counts/invoke", content=wrong)
        broken = c.post("/v1/functions/counts/invoke", content=not_json)
        nested = c.post("/v1/functions/counts/invoke", content=deep)
        ran = c.post("/v1/functions/counts/invoke", content=_large(list(range(ITEMS))))
    assert refused.status_code == 422, refused.text[:300]
    assert refused.json()["detail"] == (
        f"input does not match the function's schema at /items/{ITEMS}: "
        "'x' is not of type 'integer' (send an event that matches the input_schema of counts)"
    )
    assert broken.status_code == 400, broken.text[:300]
    assert broken.json()["detail"] == (
        f"the request body is not valid JSON: {said.value} (send a JSON document (UTF-8))"
    )
    assert nested.status_code == 400 and "nested deeper than 128" in nested.json()["detail"]
    records = audit_records(node, nested.headers["x-request-id"])
    assert [(r["action"], r["outcome"]) for r in records] == [("input.refused", "denied")]
    assert ran.status_code == 200 and ran.json() == ITEMS, ran.text[:300]


def test_large_events_do_not_stall_another_tenant(tenants: tuple[LiveNode, str, str]) -> None:
    """While tenant A calls `counts` with 5.9 MB events three times, tenant B's calls of its
    own function keep completing, and no more than one of A's calls has a step of its
    request hold the loop past 0.1 s (before: every call did)."""
    node, a, b = tenants
    event = _large(list(range(ITEMS)))
    start = time.time()
    with node.client(a) as c:
        calls, statuses = while_another_calls(
            node,
            b,
            "tiny",
            lambda: [c.post("/v1/functions/counts/invoke", content=event) for _ in range(CALLS)],
        )
    end = time.time()
    assert [(r.status_code, r.json()) for r in calls] == [(200, ITEMS)] * CALLS
    assert statuses and set(statuses) == {200}, statuses
    node.stop()  # its log complete
    slow = slow_request_steps(node, start, end)
    assert len(slow) <= 1, slow
