"""A tenant queues large events, or sends large webhooks, to stall every other tenant's
calls.

An event the node made whole (a queued event at its delivery, a webhook's delivery, a
pushed store record) is checked against the function's input_schema again
(`validate_made`). Before: it was parsed (boundedjson's depth scan and json's parser, C
code holding the GIL) and checked on the gateway's event loop, about 0.4 s of the loop's
time for 5.9 MB: a tenant queueing its own function's calls with such events stalled
every other tenant's calls at each delivery, after the invoke route had checked them off
the loop. Now an event past 64 KiB is checked in a child process (large_events.py), and
the refusals are the same.

The node runs with asyncio's debug mode, whose probe logs every callback that holds the
loop past its bound (`slow_callback_duration`, 0.1 s), naming the task whose step it was:
a delivery's is the queue workers' `_guarded` (tests/loop_support.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from async_support import wait_for
from harness import LiveNode, start_node
from loop_support import (
    PROBED,
    items_event,
    other_tenant_key,
    slow_request_steps,
    while_another_calls,
)
from triggers.webhook_signing import new_whsec, standard_headers
from webhook_support import post_hook

pytestmark = pytest.mark.slow

COUNTS = "def handler(event, context):\n    return len(event['items'])\n"
ITEMS_SCHEMA = "{type: array, items: {type: integer}}"
HOOKED = "def handler(event, context):\n    return len(event['body']['items'])\n"
#: Items of a large event: 900,000 of them are 5.9 MB of JSON.
ITEMS = 900_000
CALLS = 3


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, str, str, str]]:
    """A node in asyncio's debug mode; tenant A's `counts` (an input_schema, events of up to
    6 MiB) and `hooked` (a standard webhook at /hooks/big whose body the schema checks),
    tenant B's warm `tiny`; and the webhook's secret."""
    live = start_node(tmp_path_factory.mktemp("large-deliveries"), PROBED)
    try:
        a = live.create_key("tenant-a", "developer", ["counts", "hooked"])["key"]
        manifest = (
            "name: counts\nhandler: main.handler\nisolation: warm\nlimits: {body: 6MiB}\n"
            "input_schema: {type: object, required: [items], properties: {items: "
            + ITEMS_SCHEMA
            + "}}\n"
        )
        files = {"donjon.yaml": manifest.encode(), "main.py": COUNTS.encode()}
        assert live.deploy_files(a, files).status_code == 201
        secret = new_whsec()
        with live.client() as c:
            assert c.post("/v1/secrets/big-hook", json={"value": secret}).status_code == 201
        hooked = (
            "name: hooked\nhandler: main.handler\nisolation: warm\nlimits: {body: 6MiB}\n"
            "triggers:\n  - webhook: {path: /big, scheme: standard, secret: big-hook}\n"
            "input_schema: {type: object, properties: {body: {type: object, properties:"
            " {items: " + ITEMS_SCHEMA + "}}}}\n"
        )
        files = {"donjon.yaml": hooked.encode(), "main.py": HOOKED.encode()}
        deployed = live.deploy_files(live.admin_key, files)
        assert deployed.status_code == 201, deployed.text
        b = other_tenant_key(live)
        yield live, a, b, secret
    finally:
        live.stop()


def test_a_large_webhook_is_refused_as_a_small_one_is(
    tenants: tuple[LiveNode, str, str, str],
) -> None:
    """A large delivery whose event the schema refuses is a 422 naming the first failing
    field of the event; one the schema takes is accepted and runs."""
    node, _, _, secret = tenants
    wrong = items_event([*range(ITEMS), "x"])
    refused = post_hook(node, "/big", wrong, standard_headers(secret, wrong))
    assert refused.status_code == 422, refused.text[:300]
    assert refused.json()["detail"] == (
        f"input does not match the function's schema at /body/items/{ITEMS}: "
        "'x' is not of type 'integer' (send an event that matches the input_schema of hooked)"
    )
    right = items_event(list(range(ITEMS)))
    accepted = post_hook(node, "/big", right, standard_headers(secret, right))
    assert accepted.status_code == 202, accepted.text[:300]
    ran = wait_for(node, accepted.json()["id"])
    assert ran["status"] == "succeeded" and ran["result"] == ITEMS, str(ran)[:300]


def test_large_queued_events_do_not_stall_another_tenant(
    tenants: tuple[LiveNode, str, str, str],
) -> None:
    """While tenant A's three queued calls of `counts` with 5.9 MB events are delivered,
    tenant B's calls of its own function keep completing, and no more than one of the
    deliveries has a step hold the loop past 0.1 s (before: every delivery did)."""
    node, a, b, _ = tenants
    event = items_event(list(range(ITEMS)))

    def queue_and_wait() -> list[dict[str, object]]:
        with node.client(a) as c:
            queued = [
                c.post(
                    "/v1/functions/counts/invoke",
                    content=event,
                    headers={"prefer": "respond-async"},
                )
                for _ in range(CALLS)
            ]
        assert [r.status_code for r in queued] == [202] * CALLS, queued[0].text[:300]
        return [wait_for(node, r.json()["invocation_id"], key=a) for r in queued]

    start = time.time()
    ran, statuses = while_another_calls(node, b, "tiny", queue_and_wait)
    end = time.time()
    assert [(r["status"], r["result"]) for r in ran] == [("succeeded", ITEMS)] * CALLS
    assert statuses and set(statuses) == {200}, statuses
    node.stop()  # its log complete
    slow = slow_request_steps(node, start, end, of="_guarded")
    assert len(slow) <= 1, slow
