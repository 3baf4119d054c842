"""A tenant's function calls another of its own with large events to stall every other
tenant's calls.

`context.invoke(name, event)` carries an event of up to the callee's `limits.body` (6 MiB
here). Before: the gateway parsed it (boundedjson's depth scan and json's parser, C code
holding the GIL) and checked it against the callee's input_schema on its event loop, about
0.4 s of the loop's time for 5.4 MB at every call, while every other tenant's calls waited.
Now such an event past 64 KiB is parsed and checked in a child process, as the invoke
route's own large events are (gateway/large_events.py), and the caller learns the same.

The node runs with asyncio's debug mode, whose probe logs every callback that holds the
loop past its bound (`slow_callback_duration`, 0.1 s): a call whose callee's event is
parsed on the loop leaves such a line from its request's task (tests/loop_support.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from harness import LiveNode, start_node
from loop_support import PROBED, other_tenant_key, slow_request_steps, while_another_calls
from sec_support import audit_records

pytestmark = pytest.mark.slow

COUNTS = "def handler(event, context):\n    return len(event['items'])\n"
SCHEMA = (
    "input_schema: {type: object, required: [items],"
    " properties: {items: {type: array, items: {type: integer}}}}\n"
)
#: Sends `counts` the event `event['send']` names: 700,000 items (5.4 MB of JSON as the
#: runtime writes it), the same with a string last, or a list nested 200 deep.
CALLER = """\
def handler(event, context):
    items = list(range(700_000))
    send = event['send']
    if send == 'wrong':
        items.append('x')
    sent = {'items': items}
    if send == 'deep':
        sent = 'x' * 70_000
        for _ in range(200):
            sent = [sent]
    try:
        return {'ok': context.invoke('counts', sent)}
    except Exception as e:
        return {'error': type(e).__name__, 'message': str(e)}
"""
ITEMS = 700_000
CALLS = 3


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, str, str]]:
    """A node in asyncio's debug mode; tenant A's `counts` (an input_schema, events of up to
    6 MiB) and `caller` (granted to invoke it), and tenant B's warm `tiny`."""
    live = start_node(tmp_path_factory.mktemp("large-subcalls"), PROBED)
    try:
        a = live.create_key("tenant-a", "developer", ["counts", "caller"])["key"]
        manifest = "name: counts\nhandler: main.handler\nisolation: warm\nlimits: {body: 6MiB}\n"
        files = {"donjon.yaml": (manifest + SCHEMA).encode(), "main.py": COUNTS.encode()}
        assert live.deploy_files(a, files).status_code == 201
        caller = (
            "name: caller\nhandler: main.handler\nisolation: warm\nmemory_mb: 256\n"
            "timeout_s: 30\npermissions: {invoke: [counts]}\n"
        )
        files = {"donjon.yaml": caller.encode(), "main.py": CALLER.encode()}
        assert live.deploy_files(a, files).status_code == 201
        b = other_tenant_key(live)
        yield live, a, b
    finally:
        live.stop()


def test_a_large_subcall_event_is_refused_as_a_small_one_is(
    tenants: tuple[LiveNode, str, str],
) -> None:
    """A large event the callee's schema refuses names the first failing field, one that is
    nested too deep is refused and audited as the caller's; a large event the schema takes
    runs. (A NaN the runtime refuses itself: it never reaches the gateway.)"""
    node, a, _ = tenants
    with node.client(a) as c:
        said = {
            send: c.post("/v1/functions/caller/invoke", json={"send": send}, timeout=120)
            for send in ("wrong", "deep", "ok")
        }
    assert {send: r.status_code for send, r in said.items()} == dict.fromkeys(said, 200)
    assert said["wrong"].json() == {
        "error": "InvokeError",
        "message": (
            f"input does not match the function's schema at /items/{ITEMS}: "
            "'x' is not of type 'integer'"
        ),
    }
    deep = said["deep"].json()
    assert deep["error"] == "InvokeError" and "nested deeper than 128" in deep["message"], deep
    records = audit_records(node, said["deep"].headers["x-request-id"])
    refused = [(r["actor"], r["action"], r["outcome"]) for r in records if r["target"] == "counts"]
    assert refused == [("function:caller", "input.refused", "denied")], records
    assert said["ok"].json() == {"ok": ITEMS}


def test_large_subcall_events_do_not_stall_another_tenant(
    tenants: tuple[LiveNode, str, str],
) -> None:
    """While tenant A's `caller` sends `counts` 5.4 MB events three times, tenant B's calls
    of its own function keep completing, and no more than one of A's calls has a step of
    its request hold the loop past 0.1 s (before: every call did)."""
    node, a, b = tenants
    start = time.time()
    with node.client(a) as c:
        calls, statuses = while_another_calls(
            node,
            b,
            "tiny",
            lambda: [
                c.post("/v1/functions/caller/invoke", json={"send": "ok"}, timeout=120)
                for _ in range(CALLS)
            ],
        )
    end = time.time()
    assert [(r.status_code, r.json()) for r in calls] == [(200, {"ok": ITEMS})] * CALLS
    assert statuses and set(statuses) == {200}, statuses
    node.stop()  # its log complete
    slow = slow_request_steps(node, start, end)
    assert len(slow) <= 1, slow
